"""Products and personas for the annotation tests (curator, member,
outsider), made directly in the database."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth.models import Group, User
from django.db import connections

from dpd.access import Identity, SignIn
from dpd.metadata import product_uid
from dpd.models import DataProduct

TEAM = "ac9d0e43-931d-455d-b916-7e508db78a8e"


def make_product(eb: str = "eb-m001-20230921-245", *, access_group: str | None = None):
    """A catalogued product shaped like the fixture volume's."""
    folder = f"{eb}-{access_group or 'public'}"
    document = {
        "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
        "execution_block": eb,
        "context": {"intent": "Tied-array beam observation of J0437-4715"},
        "files": [
            {"path": "pst-low/245/data", "status": "done", "description": "Voltage data"},
            {"path": "pst-low/245/observation.log", "status": "done", "description": "Log"},
        ],
        "obscore": {"dataproduct_type": "timeseries", "instrument_name": "SKA-LOW-PST"},
    }
    if access_group is not None:
        document["context"]["access_group"] = access_group
    return DataProduct.objects.create(
        uid=product_uid(eb, f"/volume/{folder}"),
        execution_block=eb,
        metadata_file=f"{folder}/ska-data-product.yaml",
        dataproduct_file=folder,
        date_created=dt.date(2023, 9, 21),
        metadata=document,
        access_group=access_group,
    )


def make_user(name: str, *, staff: bool = False, groups: tuple[str, ...] = ()) -> User:
    user = User.objects.create_user(
        name, email=f"{name}@skao.int", password="correct horse battery", is_staff=staff
    )
    for group in groups:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def account_identity(user: User) -> Identity:
    """The identity a Django user (session or API token) writes annotations as."""
    return Identity(SignIn.ACCOUNT, str(user.pk), user.email or user.get_username())


def named(name: str) -> Identity:
    """An author known by name alone: a dashboard user with that principal name."""
    return Identity(SignIn.DASHBOARD, name, name)


def unknown_uid() -> str:
    return str(uuid.UUID(int=12345))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def database_unreachable(alias: str = "default") -> Iterator[None]:
    """Point the connection at a closed port: every query fails to connect,
    as when the PostgreSQL server is down. Needs a test without a wrapping
    transaction (transactional_db)."""
    connection = connections[alias]
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
