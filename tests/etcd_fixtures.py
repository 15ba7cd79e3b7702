"""Fixtures for a real etcd: one server for the session, wiped before each
test that uses it, and a server of a test's own for the ones that stop it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.etcd_server import EtcdServer, start_etcd


@pytest.fixture(scope="session")
def _session_etcd() -> Iterator[EtcdServer]:
    server = start_etcd()
    yield server
    server.destroy()


@pytest.fixture
def sdp_etcd(_session_etcd: EtcdServer, settings) -> EtcdServer:
    """The session's etcd, empty, as the configured SDP configuration database."""
    _session_etcd.clear()
    settings.SDP_ETCD_HOST = "127.0.0.1"
    settings.SDP_CONFIG_PORT = _session_etcd.port
    settings.SDP_CONFIG_PATH = ""
    return _session_etcd


@pytest.fixture
def own_etcd(settings) -> Iterator[EtcdServer]:
    """An etcd of this test's own (it may stop and restart it)."""
    server = start_etcd()
    settings.SDP_ETCD_HOST = "127.0.0.1"
    settings.SDP_CONFIG_PORT = server.port
    settings.SDP_CONFIG_PATH = ""
    yield server
    server.destroy()
