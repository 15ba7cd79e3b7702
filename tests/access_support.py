"""Test support for access control: a local stand-in for the SKA permissions
API (the one external service the suite may fake), a small catalogue with one
product per visibility case, and the five personas.

The fake API is a real HTTP server on 127.0.0.1, so the code under test does
real requests, timeouts and parsing.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

from dpd import metadata
from dpd.models import DataProduct

TEAM = "ac9d0e43-931d-455d-b916-7e508db78a8e"
OTHER = "not-in-my-access-groups"


@dataclass
class TokenReply:
    """How the fake API answers one token: a normal answer, or a fault."""

    groups: list | None = None
    principal: str | None = None
    fault: str | None = None  # None, "slow", "garbage", "500", "expired", "wrong-shape"


@dataclass
class FakePermissionsApi:
    """Answers /v1/getusergroupids and /v2/user/profile for registered tokens."""

    tokens: dict[str, TokenReply] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, token)
    slow_seconds: float = 1.0
    url: str = ""

    def add(self, token: str, **reply) -> str:
        self.tokens[token] = TokenReply(**reply)
        return token

    def calls(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)

    def start(self) -> FakePermissionsApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                header = self.headers.get("Authorization", "")
                token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
                api.requests.append((self.path, token))
                reply = api.tokens.get(token)
                if reply is None or reply.fault == "expired":
                    return self._send(401, {"detail": "token expired or unknown"})
                if reply.fault == "slow":
                    time.sleep(api.slow_seconds)
                if reply.fault == "500":
                    return self._send(500, {"detail": "boom"})
                if reply.fault == "garbage":
                    return self._send_raw(200, b"<html>not json</html>")
                if reply.fault == "wrong-shape":
                    return self._send(200, {"user_groups": "ac9d0e43", "user_profile": ["x"]})
                if self.path == "/v1/getusergroupids":
                    return self._send(200, {"user_groups": reply.groups or []})
                if self.path == "/v2/user/profile":
                    profile = {"userPrincipalName": reply.principal, "displayName": "Someone"}
                    return self._send(200, {"user_profile": profile})
                return self._send(404, {"detail": "Not Found"})

            def _send(self, status: int, body) -> None:
                self._send_raw(status, json.dumps(body).encode())

            def _send_raw(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: stop() waits for the loop to notice, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- The catalogue: one product per visibility case -------------------------------

# key -> (folder, access_group); "open" has no access_group at all.
PRODUCTS = {
    "open": ("eb-test-20200325-00001", None),
    "team": ("eb-notebook-20240320-83046/pb-notebookvr-20240320-83046", TEAM),
    "other": ("eb-test-20240513-47584/pb-testrealtime-20240513-47584", OTHER),
    "nobody": ("eb-hidden-20240101-00001", ""),
}
HIDDEN_FROM_EVERYONE = """\
interface: http://schema.skao.int/ska-data-product-meta/0.1
execution_block: eb-hidden-20240101-00001
context:
  access_group: ""
  intent: a product nobody may see
config: {}
files:
  - path: secret.txt
    status: done
"""


def catalogue(volume: Path, configured_root: str) -> dict[str, DataProduct]:
    """Write the "" product into the volume and catalogue the four products."""
    hidden = volume / PRODUCTS["nobody"][0]
    hidden.mkdir(parents=True, exist_ok=True)
    (hidden / "ska-data-product.yaml").write_text(HIDDEN_FROM_EVERYONE)
    (hidden / "secret.txt").write_text("nobody should read this\n")
    products = {}
    for key, (folder, access_group) in PRODUCTS.items():
        relative = f"{folder}/ska-data-product.yaml"
        parsed = metadata.from_volume_file(
            (volume / relative).read_bytes(),
            configured_root=configured_root,
            relative_metadata_file=relative,
        )
        assert parsed.access_group == access_group, key
        products[key] = DataProduct.objects.create(**DataProduct.fields_from(parsed))
    return products


# --- The five personas ------------------------------------------------------------


@dataclass
class Persona:
    name: str
    client: APIClient
    groups: frozenset[str] | None  # None: staff, sees everything


def personas(api: FakePermissionsApi) -> dict[str, Persona]:
    """anonymous, member (dashboard token, group TEAM), non-member (dashboard
    token, an unrelated group), staff (admin session), service account (API
    token, group OTHER, may ingest and re-index)."""
    member = APIClient()
    member.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + api.add("member-token", groups=[TEAM, "unrelated"], principal="member@skao.int")
    )
    outsider = APIClient()
    outsider.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + api.add("outsider-token", groups=["unrelated"], principal="outsider@skao.int")
    )
    staff = APIClient()
    staff.force_login(User.objects.create_user("curator", is_staff=True))
    service = APIClient()
    service.credentials(HTTP_AUTHORIZATION="Token " + service_account_token("pipeline", OTHER))
    return {
        "anonymous": Persona("anonymous", APIClient(), frozenset()),
        "member": Persona("member", member, frozenset({TEAM, "unrelated"})),
        "non-member": Persona("non-member", outsider, frozenset({"unrelated"})),
        "staff": Persona("staff", staff, None),
        "service account": Persona("service account", service, frozenset({OTHER})),
    }


def service_account_token(name: str, *groups: str, ingest: bool = True) -> str:
    """Make a service account through the management command; return its token."""
    from io import StringIO

    out = StringIO()
    args = [name, *[f"--group={group}" for group in groups]]
    if ingest:
        args += ["--can-ingest", "--can-reindex"]
    call_command("create_service_account", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()
