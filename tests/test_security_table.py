"""docs/security.md's endpoint tables, checked cell by cell against the live API.

The tables are parsed from the document, so the document and the behaviour
cannot drift apart: each row names an endpoint, each column one of the five
personas, each cell what that persona gets (see the legend in the doc). A
second test makes sure every route of the project has a row.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from annotations.models import Annotation
from indexing.models import IndexRun
from tests.access_support import FakePermissionsApi, Persona, catalogue, personas

DOC = django_settings.BASE_DIR / "docs" / "security.md"
PERSONAS = ("anonymous", "member", "non-member", "staff", "service account")
VISIBILITY = {"open", "own groups", "all"}
OUTCOMES = VISIBILITY | {"public", "allowed", "401", "403", "login"}


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    cells: dict[str, str]

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


def parse_tables() -> dict[str, list[Row]]:
    """The tables after `<!-- security-table: off|on -->` markers."""
    tables: dict[str, list[Row]] = {}
    mode = None
    header: list[str] = []
    for line in DOC.read_text().splitlines():
        marker = re.fullmatch(r"<!-- security-table: (\w+) -->", line.strip())
        if marker:
            mode, header = marker.group(1), []
            tables[mode] = []
            continue
        if mode is None:
            continue
        if not line.startswith("|"):
            if tables[mode]:
                mode = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            assert header == ["Endpoint", *PERSONAS], header
            continue
        if set(cells[0]) <= {"-", ":"}:
            continue
        method, path = cells[0].strip("`").split(" ", 1)
        row = Row(method, path, dict(zip(PERSONAS, cells[1:], strict=True)))
        assert set(row.cells.values()) <= OUTCOMES, row
        tables[mode].append(row)
    return tables


TABLES = parse_tables()


def full_table(mode: str) -> list[Row]:
    """Every row for a mode: the "on" table lists only the rows that change."""
    changed = {row.endpoint: row for row in TABLES.get(mode, [])}
    return [changed.get(row.endpoint, row) for row in TABLES["off"]]


CASES = [(mode, row) for mode in ("off", "on") for row in full_table(mode)]


# --- How each endpoint is asked ----------------------------------------------------


@dataclass
class World:
    products: dict
    people: dict[str, Persona]
    annotations: dict[str, Annotation]
    run: IndexRun


def _login_redirect(response) -> bool:
    return response.status_code == 302 and "login" in response.get("Location", "")


def per_product(ask: Callable, seen: tuple[int, ...], hidden: tuple[int, ...]):
    """Ask once per product; the visible ones, or a refusal common to all."""

    def probe(client, world: World):
        outcomes = {}
        for key, product in world.products.items():
            response = ask(client, product, world.annotations[key])
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
            if _login_redirect(response):
                outcomes[key] = "login"
            elif response.status_code in seen:
                outcomes[key] = "seen"
            elif response.status_code in hidden:
                outcomes[key] = "hidden"
            else:
                outcomes[key] = str(response.status_code)
        refusals = set(outcomes.values()) - {"seen", "hidden"}
        if refusals:
            return refusals.pop() if len(refusals) == 1 else f"mixed {sorted(refusals)}"
        return frozenset(key for key, outcome in outcomes.items() if outcome == "seen")

    return probe


def listed(path: str, body: dict):
    def probe(client, world: World):
        response = client.post(path, body, format="json")
        if response.status_code != 200:
            return str(response.status_code)
        rows = response.json()
        rows = rows["data"] if isinstance(rows, dict) else rows
        uids = {row["uid"] for row in rows}
        return frozenset(key for key, product in world.products.items() if str(product.uid) in uids)

    return probe


def counted(client, world: World):
    body = client.get("/status").json()
    return body["metadata_store_status"]["number_of_dataproducts"]


def home_page_count(client, world: World):
    """The product count the home page shows the caller."""
    page = client.get("/").content.decode()
    return int(re.search(r'id="products-total" data-count="(\d+)"', page).group(1))


def recent_page(client, world: World):
    response = client.get("/products/annotations/recent/")
    if _login_redirect(response):
        return "login"
    page = response.content.decode()
    return frozenset(key for key in world.products if f"note on {key}" in page)


def action(ask: Callable, allowed: tuple[int, ...]):
    def probe(client, world: World):
        response = ask(client, world)
        if response.status_code in allowed:
            return "allowed"
        if _login_redirect(response):
            return "login"
        return str(response.status_code)

    return probe


def public(method: str, path: str, ok: tuple[int, ...] = (200,)):
    def probe(client, world: World):
        response = getattr(client, method.lower())(path)
        return "public" if response.status_code in ok else str(response.status_code)

    return probe


WIDE = {"start_date": "1900-01-01", "end_date": "2100-01-01"}
PROBES: dict[str, Callable] = {
    "GET /": home_page_count,
    "GET /status": counted,
    "POST /dataproductsearch": listed("/dataproductsearch", WIDE),
    "POST /filterdataproducts": listed("/filterdataproducts", {}),
    "GET /muidatagridconfig": public("GET", "/muidatagridconfig"),
    "GET /{lng}/humanreadable": public("GET", "/en/humanreadable"),
    "GET /layout": public("GET", "/layout"),
    "POST /dataproductmetadata": per_product(
        lambda c, p, a: c.post("/dataproductmetadata", {"uid": str(p.uid)}, format="json"),
        seen=(200,),
        hidden=(404,),
    ),
    "POST /download": per_product(
        lambda c, p, a: c.post("/download", {"uid": str(p.uid)}, format="json"),
        seen=(200,),
        hidden=(404,),
    ),
    "POST /ingestnewdataproduct": action(
        lambda c, w: c.post(
            "/ingestnewdataproduct", {"execution_block": "eb-test-20200325-00001"}, format="json"
        ),
        allowed=(200, 201),
    ),
    "POST /ingestnewmetadata": action(
        lambda c, w: c.post(
            "/ingestnewmetadata", {"execution_block": "eb-table-20240101-00001"}, format="json"
        ),
        allowed=(200, 201),
    ),
    "GET /reindexdataproducts": action(
        lambda c, w: c.get("/reindexdataproducts"), allowed=(202, 409)
    ),
    "GET /api/v1/index-runs/": action(lambda c, w: c.get("/api/v1/index-runs/"), allowed=(200,)),
    "GET /api/v1/index-runs/{id}/": action(
        lambda c, w: c.get(f"/api/v1/index-runs/{w.run.pk}/"), allowed=(200,)
    ),
    "GET /annotations/{uid}": per_product(
        lambda c, p, a: c.get(f"/annotations/{p.uid}"), seen=(200,), hidden=(204,)
    ),
    "POST /annotation": per_product(
        lambda c, p, a: c.post(
            "/annotation",
            {"data_product_uid": str(p.uid), "annotation_text": "checked"},
            format="json",
        ),
        seen=(201,),
        hidden=(404,),
    ),
    "GET /products/{uid}/": per_product(
        lambda c, p, a: c.get(f"/products/{p.uid}/"), seen=(200,), hidden=(404,)
    ),
    "POST /products/{uid}/annotations/": per_product(
        lambda c, p, a: c.post(f"/products/{p.uid}/annotations/", {"annotation_text": "hi"}),
        seen=(302,),  # saved, back to the product page (a login redirect is told apart)
        hidden=(404,),
    ),
    "GET /products/annotations/recent/": recent_page,
    "GET /products/annotations/{id}/edit/": per_product(
        lambda c, p, a: c.get(f"/products/annotations/{a.annotation_id}/edit/"),
        seen=(200,),
        hidden=(404,),
    ),
    "GET /products/login/": public("GET", "/products/login/"),
    "GET /products/logout/": action(lambda c, w: c.get("/products/logout/"), allowed=(200,)),
    "POST /products/logout/": public("POST", "/products/logout/", ok=(200, 302)),
    "GET /admin/": action(lambda c, w: c.get("/admin/"), allowed=(200,)),
    "GET /schema": public("GET", "/schema"),
    "GET /openapi.json": public("GET", "/openapi.json"),
    "GET /docs": public("GET", "/docs"),
    "GET /redoc": public("GET", "/redoc"),
}


def expected(cell: str, persona: Persona, products: dict):
    if cell not in VISIBILITY:
        return cell
    if cell == "all":
        return frozenset(products)
    open_keys = {key for key, product in products.items() if product.access_group is None}
    if cell == "open":
        return frozenset(open_keys)
    groups = persona.groups or frozenset()
    return frozenset(
        open_keys | {key for key, product in products.items() if product.access_group in groups}
    )


# --- The tests -----------------------------------------------------------------------


@pytest.fixture
def permissions_api(settings):
    api = FakePermissionsApi().start()
    settings.SKA_PERMISSIONS_API_HOST = api.url
    settings.SKA_PERMISSIONS_API_TIMEOUT_SECONDS = 1.0
    yield api
    api.stop()


@pytest.fixture
def world(db, sample_volume, settings, permissions_api) -> World:
    products = catalogue(sample_volume, settings.PERSISTENT_STORAGE_PATH)
    annotations = {
        key: Annotation.objects.create(
            data_product_uid=product.uid,
            annotation_text=f"note on {key}",
            user_principal_name="someone@skao.int",
        )
        for key, product in products.items()
    }
    run = IndexRun.objects.create(trigger="command")
    return World(products, personas(permissions_api), annotations, run)


@pytest.mark.parametrize("mode, row", CASES, ids=[f"{mode}-{row.endpoint}" for mode, row in CASES])
def test_the_security_table_matches_the_live_api(mode, row, settings, world):
    settings.DPD_COMPAT_OPEN_PRODUCT_ACCESS = mode == "on"
    settings.DPD_COMPAT_OPEN_MANAGEMENT = mode == "on"
    probe = PROBES[row.endpoint]
    wrong = []
    for name, cell in row.cells.items():
        persona = world.people[name]
        observed = probe(persona.client, world)
        want = expected(cell, persona, world.products)
        if isinstance(observed, int) and isinstance(want, frozenset):
            want = len(want)
        if observed != want:
            wrong.append(f"{name}: the doc says {cell!r}, the API gives {observed!r}")
    assert not wrong, f"{row.endpoint} (compatibility {mode}):\n" + "\n".join(wrong)


def _sample(path: str) -> str:
    return path.replace("{uid}", str(uuid.uuid4())).replace("{lng}", "en").replace("{id}", "1")


def _view(match_func):
    return getattr(match_func, "view_class", None) or getattr(match_func, "cls", None) or match_func


def _routes(resolver=None, prefix: str = ""):
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue  # the admin is one row: it is all staff-only
            yield from _routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def test_every_route_of_the_project_has_a_row_in_the_table():
    assert set(TABLES) == {"off", "on"}
    rows = {row.endpoint for row in TABLES["off"]}
    assert {row.endpoint for row in TABLES["on"]} <= rows
    assert rows == set(PROBES)
    covered = {_view(resolve(_sample(endpoint.split(" ", 1)[1])).func) for endpoint in rows}
    missing = [pattern for pattern, callback in _routes() if _view(callback) not in covered]
    assert not missing, f"routes without a row in docs/security.md: {missing}"
