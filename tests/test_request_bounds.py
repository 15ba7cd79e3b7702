"""Every list and string a search or filter body carries has a bound, and a
body past one is a 4xx naming the field, on SQLite as on PostgreSQL; a
database error is answered by its cause (only an unreachable database is the
503 "not available")."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import DatabaseError, connection, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.test import RequestFactory
from rest_framework.request import Request

from dpd.api import search_serializers as bounds
from dpd.api.exceptions import DATABASE_UNAVAILABLE, QUERY_TIMED_OUT, api_exception_handler
from dpd.database_errors import Cause, cause
from tests.annotation_helpers import database_unreachable
from tests.test_api_filter import item

pytestmark = pytest.mark.usefixtures("indexed_sample")

OPEN_PRODUCTS = 12
EB = "eb-m001-20221212-12345"  # an open product's execution block


def any_of(field: str, values) -> dict:
    return {"filterModel": {"items": [item(field, "isAnyOf", values)]}, "pageSize": 100}


def filter_answer(client, body):
    return client.post("/filterdataproducts", body, format="json")


# --- The two requests, on the embedded default and on PostgreSQL ----------


@pytest.mark.parametrize("count", [1000, 50_000])
def test_an_any_of_list_past_the_bound_is_a_400_naming_the_field_on_sqlite(sqlite_peer, count):
    values = [f"eb-m{n:03d}-20221212-12345" for n in range(count)]

    answer = sqlite_peer.post("/filterdataproducts", any_of("execution_block", values))

    assert answer["status"] == 400
    assert answer["body"]["detail"].startswith("filterModel: items: 0: value: ")
    assert f"at most {bounds.MAX_ANY_OF_VALUES} values" in answer["body"]["detail"]


@pytest.mark.parametrize("count", [1000, 50_000])
def test_an_any_of_list_past_the_bound_is_a_400_naming_the_field(anonymous, count):
    values = [f"eb-m{n:03d}-20221212-12345" for n in range(count)]

    response = filter_answer(anonymous, any_of("execution_block", values))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("filterModel: items: 0: value: ")


@pytest.mark.parametrize("field", ["execution_block", "context.observer"])
def test_an_any_of_list_at_the_bound_is_one_condition_on_both_databases(
    sqlite_peer, anonymous, field, django_assert_max_num_queries
):
    matching = EB if field == "execution_block" else "AIV_person_1"
    filler = [f"v{n:03d}" for n in range(bounds.MAX_ANY_OF_VALUES - 1)]  # 4 chars each
    body = any_of(field, [*filler, matching.upper()])

    on_sqlite = sqlite_peer.post("/filterdataproducts", body)
    with django_assert_max_num_queries(3) as queries:  # the fields probe, the rows
        on_postgresql = filter_answer(anonymous, body)

    assert on_sqlite["status"] == on_postgresql.status_code == 200
    assert on_sqlite["body"] == on_postgresql.json()
    assert on_sqlite["body"]["total"] >= 1
    assert not [q for q in queries.captured_queries if " OR " in q["sql"]], "one per value"


def test_a_comma_separated_any_of_is_bounded_like_a_list(anonymous):
    too_many = ",".join(["a"] * (bounds.MAX_ANY_OF_VALUES + 1))

    response = filter_answer(anonymous, any_of("execution_block", too_many))

    assert response.status_code == 400
    assert "filterModel: items: 0: value: " in response.json()["detail"]


def test_an_any_of_list_too_long_in_all_is_a_400_however_few_its_values(anonymous):
    values = ["x" * 2000, "y" * 2000, "z" * 200]  # 4,200 characters

    response = filter_answer(anonymous, any_of("context.observer", values))

    assert response.status_code == 400
    assert f"at most {bounds.MAX_ANY_OF_CHARACTERS} characters" in response.json()["detail"]


# --- Every other bound: at it, answered; just past it, a 400 naming the field -------

LONG = "x" * (bounds.MAX_TEXT + 1)
KEYWORD = "x" * (bounds.MAX_KEYWORD + 1)
PAST_THE_BOUNDS = {
    "filterModel: items: ": {"filterModel": {"items": [item("uid", "contains", "a")] * 65}},
    "filterModel: items: 0: field: ": {"filterModel": {"items": [item(LONG, "equals", "a")]}},
    "filterModel: items: 0: operator: ": {"filterModel": {"items": [item("uid", KEYWORD, "a")]}},
    "filterModel: items: 0: value: ": {"filterModel": {"items": [item("uid", "equals", LONG)]}},
    "filterModel: items: 0: id: ": {
        "filterModel": {"items": [{**item("uid", "equals", "a"), "id": {"deep": [1]}}]}
    },
    "filterModel: items: 0: keyPairs: ": {
        "filterModel": {"items": [{"field": "formFields", "keyPairs": [{"keyPair": "a"}] * 65}]}
    },
    "filterModel: items: 0: keyPairs: 0: ": {
        "filterModel": {"items": [{"field": "formFields", "keyPairs": [{"keyPair": LONG}]}]}
    },
    "filterModel: logicOperator: ": {"filterModel": {"items": [], "logicOperator": KEYWORD}},
    "filterModel: quickFilterValues: ": {"filterModel": {"quickFilterValues": ["a"] * 65}},
    "filterModel: quickFilterLogicOperator: ": {
        "filterModel": {"quickFilterLogicOperator": KEYWORD}
    },
    "searchPanelOptions: items: 0: value: ": {
        "searchPanelOptions": {"items": [item("uid", "isAnyOf", [[1]])]}
    },
    "sortModel: ": {"sortModel": [{"field": "uid", "sort": "asc"}] * 17},
    "sortModel: 0: field: ": {"sortModel": [{"field": LONG, "sort": "asc"}]},
    "sortModel: 0: sort: ": {"sortModel": [{"field": "uid", "sort": KEYWORD}]},
}


@pytest.mark.parametrize(("named", "body"), PAST_THE_BOUNDS.items(), ids=list(PAST_THE_BOUNDS))
def test_a_filter_body_past_a_bound_is_a_400_naming_the_field(anonymous, named, body):
    response = filter_answer(anonymous, body)

    assert response.status_code == 400
    assert response.json()["detail"].startswith(named)


def test_a_filter_body_at_every_bound_is_answered(anonymous):
    at = "x" * bounds.MAX_TEXT
    body = {
        "filterModel": {
            "items": [item("uid", "doesNotContain", at)]
            + [item("uid", "isNotEmpty", None)] * (bounds.MAX_FILTER_ITEMS - 2)
            + [{"field": "formFields", "keyPairs": [{"keyPair": ""}] * 64, "id": at}],
            "logicOperator": "a" * bounds.MAX_KEYWORD,
            "quickFilterValues": ["q"] * bounds.MAX_FILTER_ITEMS,
        },
        "sortModel": [{"field": at, "sort": "asc"}] * bounds.MAX_SORT_ITEMS,
        "pageSize": 100,
    }

    response = filter_answer(anonymous, body)

    assert response.status_code == 200
    assert response.json()["total"] == OPEN_PRODUCTS


def test_filter_values_too_long_in_all_are_a_400_however_few(anonymous):
    half = "x" * (bounds.MAX_MATCH_CHARACTERS // 2)
    body = {
        "filterModel": {"items": [item("context.intent", "contains", half)]},
        "searchPanelOptions": {"items": [item("context.notes", "contains", half + "x")]},
    }

    response = filter_answer(anonymous, body)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("searchPanelOptions: Ensure what this body")


def test_key_value_pairs_too_long_in_all_are_a_422(anonymous):
    pairs = ["files:" + "x" * 2000, "files:" + "y" * 2100]

    response = anonymous.post("/dataproductsearch", {"key_value_pairs": pairs}, format="json")

    assert response.status_code == 422
    assert response.json()["detail"].startswith("key_value_pairs: Ensure what this body")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"key_value_pairs": ["a:b"] * 65}, "key_value_pairs: "),
        ({"key_value_pairs": ["a:" + LONG]}, "key_value_pairs: 0: "),
        ({"start_date": LONG}, "start_date: "),
        ({"end_date": LONG}, "end_date: "),
    ],
)
def test_a_search_body_past_a_bound_is_a_422_naming_the_field(anonymous, body, named):
    response = anonymous.post("/dataproductsearch", body, format="json")

    assert response.status_code == 422
    assert response.json()["detail"].startswith(named)


# --- Database errors by cause ------------------------------------------------------


def _error_of(run) -> DatabaseError:
    try:
        run()
    except DatabaseError as exc:
        return exc
    raise AssertionError("the database answered")


def _sqlite(name: str) -> SQLiteWrapper:
    settings = {**connection.settings_dict, "NAME": name, "OPTIONS": {}}
    return SQLiteWrapper({**settings, "ENGINE": "django.db.backends.sqlite3"})


def _deep_sqlite_expression() -> None:
    wrapper = _sqlite(":memory:")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT " + " OR ".join(["1 = 2"] * 1500))
    finally:
        wrapper.close()


def _unopenable_sqlite_file() -> None:
    wrapper = _sqlite("/nonexistent-folder/dpd.sqlite3")
    try:
        wrapper.ensure_connection()
    finally:
        wrapper.close()


def _too_many_postgresql_parameters() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ",".join(["%s"] * 70_000), [1] * 70_000)


def _refused_postgresql_connection() -> None:
    with database_unreachable():
        connection.ensure_connection()


def _terminated_postgresql_session() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def _postgresql_statement_timeout() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '50ms'")
        try:
            cursor.execute("SELECT pg_sleep(2)")
        finally:
            connection.close()  # the session's limit goes with it


def _bad_sql() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM dpd_dataproduct")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (_deep_sqlite_expression, Cause.TOO_LARGE),
        (_unopenable_sqlite_file, Cause.UNAVAILABLE),
        (_too_many_postgresql_parameters, Cause.TOO_LARGE),
        (_refused_postgresql_connection, Cause.UNAVAILABLE),
        (_terminated_postgresql_session, Cause.UNAVAILABLE),
        (_postgresql_statement_timeout, Cause.TIMED_OUT),
        (_bad_sql, Cause.OTHER),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)).strip("_"),
)
def test_a_database_error_is_classified_by_its_cause(run, expected):
    error = _error_of(run)
    connections.close_all()

    assert cause(error) is expected


def _answer(error: DatabaseError, method: str):
    request = Request(getattr(RequestFactory(), method.lower())("/filterdataproducts"))
    return api_exception_handler(error, {"request": request, "view": None})


@pytest.mark.django_db(transaction=True)
def test_only_an_unreachable_database_is_the_503_not_available(caplog):
    refused = _error_of(_refused_postgresql_connection)
    too_large = _error_of(_deep_sqlite_expression)
    faulty = _error_of(_bad_sql)

    assert (_answer(refused, "POST").status_code, _answer(refused, "POST").data) == (
        503,
        {"detail": DATABASE_UNAVAILABLE},
    )
    # A request whose body shaped the query: sending it again never succeeds.
    asked = _answer(too_large, "POST")
    assert asked.status_code == 400
    assert "Expression tree is too large" in asked.data["detail"]
    # The same refusal of a query no body shaped is ours: a 500 with a detail.
    ours = _answer(too_large, "GET")
    assert (ours.status_code, ours.data) == (500, {"detail": "Database error: OperationalError"})
    assert _answer(faulty, "POST").status_code == 500
    assert any(record.exc_info for record in caplog.records if record.levelname == "ERROR")


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="PostgreSQL's statement_timeout")
@pytest.mark.django_db(transaction=True)
def test_a_query_past_the_databases_time_limit_is_a_503_saying_so(client):
    """Deployments set statement_timeout on the service's role; a search it
    stops was a 500 "Database error: QueryCanceled"."""
    import psycopg

    holder = psycopg.connect(**connection.get_connection_params(), autocommit=False)
    try:
        # Another session holds the table: the search waits until the limit.
        holder.execute("LOCK TABLE dpd_dataproduct IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '300ms'")
        response = client.post(
            "/filterdataproducts", {"page": 0, "pageSize": 5}, content_type="application/json"
        )
    finally:
        holder.rollback()
        holder.close()
        connection.close()  # the next test's session has no time limit
    assert response.status_code == 503
    assert response.json() == {"detail": QUERY_TIMED_OUT}


def test_status_reports_the_database_running_after_a_refused_request(anonymous):
    values = [f"v{n}" for n in range(50_000)]
    assert filter_answer(anonymous, any_of("execution_block", values)).status_code == 400

    status = anonymous.get("/status").json()

    assert status["metadata_store_status"]["db_status"]["running"] is True


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/dataproductmetadata", {"execution_block": LONG}, "execution_block: "),
        (
            "/dataproductmetadata",
            {"uid": "", "execution_block": EB, "data_store": LONG},
            "data_store: ",
        ),
        ("/ingestnewdataproduct", {"execution_block": EB, "fullPathName": LONG}, "fullPathName: "),
        ("/ingestnewdataproduct", {"execution_block": EB, "metaDataFile": LONG}, "metaDataFile: "),
    ],
)
def test_a_product_body_string_past_its_bound_is_a_422_naming_the_field(curator, path, body, named):
    response = curator.post(path, body, format="json")

    assert response.status_code == 422
    assert response.json()["detail"].startswith(named)
