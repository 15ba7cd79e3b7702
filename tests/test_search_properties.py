"""Search and filter bodies generated within and just past every request
bound (dpd.api.search_serializers), sent to the same catalogue on PostgreSQL
(this process) and on SQLite (tests/database_peer.py): neither answers 5xx,
neither runs more than STATEMENT_BUDGET statements, and both give the same
answer. Derandomized, with a bounded example count: the same examples run at
every CI run, in well under a minute."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from dpd.api import search_serializers as bounds

pytestmark = pytest.mark.usefixtures("indexed_sample")

# docs/api.md, "Request bounds": the most statements a search or filter
# request runs (the field catalogue's probe and read, the rows, the last
# change time a remembered total holds for, the total). The sample never
# counts apart (under 1,000 matches): tests/test_remembered_totals.py holds
# a counted page to the same budget.
STATEMENT_BUDGET = 5
EXAMPLES = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

PAST_EXAMPLES = settings(EXAMPLES, max_examples=15)

# Words of the sample catalogue, so that generated filters also match rows;
# ASCII only: PostgreSQL's and SQLite's case folding agree there.
WORDS = [
    "eb-m001-20221212-12345",
    "EB-M005",
    "m00",
    "AIV_person_1",
    "receive",
    "TestDataFile1.txt",
    "pb-m001-20191031-12345",
    "None",
    "19",
    "0.1.3",
    "done",
    "shared",
    "sdp",
    "2022-12-12",
    "%",
    "_",
    "\\",
    "a,b",
]
TEXT = st.one_of(
    st.sampled_from(WORDS),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
)
# Strings at the bound and just past it.
AT_TEXT = "x" * bounds.MAX_TEXT
PAST_TEXT = "x" * (bounds.MAX_TEXT + 1)

KNOWN_FIELDS = st.sampled_from(
    [
        "execution_block",
        "date_created",
        "context.observer",
        "context.intent",
        "config.processing_block",
        "config.version",
        "files",
        "size",
        "uid",
        "metadata_file",
        "dataproduct_file",
        "metadata_store_name",
        "sdp_flow_status",
        "annotation",
        "no.such.field",
    ]
)
STRING_OPERATORS = st.sampled_from(
    ["contains", "doesNotContain", "equals", "doesNotEqual", "startsWith", "endsWith", "isAnyOf"]
)
OTHER_OPERATORS = st.sampled_from(
    ["isEmpty", "isNotEmpty", "=", "!=", ">", ">=", "<", "<=", "is", "not", "after", "before"]
)
SCALARS = st.one_of(
    st.none(),
    TEXT,
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
)
# isAnyOf values at the count and the character bounds.
FILLER = [f"v{n:03d}" for n in range(bounds.MAX_ANY_OF_VALUES + 1)]  # 4 characters each
ANY_OF_AT_THE_BOUNDS = st.sampled_from(
    [
        [*FILLER[: bounds.MAX_ANY_OF_VALUES - 1], "eb-m001-20221212-12345"],
        ["y" * (bounds.MAX_ANY_OF_CHARACTERS - 3), "EB-M001-20221212-12345"[:3]],
        ",".join(FILLER[: bounds.MAX_ANY_OF_VALUES]),
    ]
)
VALUES = st.one_of(
    TEXT, TEXT, SCALARS, st.lists(TEXT, min_size=1, max_size=4), ANY_OF_AT_THE_BOUNDS
)
ITEMS = st.fixed_dictionaries(
    {
        "field": st.one_of(KNOWN_FIELDS, KNOWN_FIELDS, KNOWN_FIELDS, TEXT),
        "operator": st.one_of(STRING_OPERATORS, STRING_OPERATORS, OTHER_OPERATORS),
        "value": VALUES,
    },
    optional={"id": st.integers()},
)
FORM_FIELDS = st.builds(
    lambda pairs: {"field": "formFields", "keyPairs": pairs},
    st.lists(st.fixed_dictionaries({"keyPair": TEXT, "valuePair": SCALARS}), max_size=3),
)
ANY_ITEM = st.one_of(ITEMS, ITEMS, ITEMS, FORM_FIELDS)


def _short_or_full(element, bound: int):
    """A short list, now and then one at the bound (one element repeated)."""
    return st.one_of(
        st.lists(element, max_size=3),
        st.lists(element, max_size=3),
        st.lists(element, max_size=3),
        st.builds(lambda e: [e] * bound, element),
    )


FILTER_MODELS = st.fixed_dictionaries(
    {"items": _short_or_full(ANY_ITEM, bounds.MAX_FILTER_ITEMS)},
    optional={
        "logicOperator": st.sampled_from(["and", "or", "OR", "x" * bounds.MAX_KEYWORD]),
        "quickFilterValues": _short_or_full(TEXT, bounds.MAX_FILTER_ITEMS),
    },
)
SORT_ITEMS = st.fixed_dictionaries(
    {
        "field": st.one_of(KNOWN_FIELDS, st.just(AT_TEXT)),
        "sort": st.sampled_from(["asc", "desc", "desc", None, "sideways"]),
    }
)
FILTER_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "filterModel": FILTER_MODELS,
        "searchPanelOptions": FILTER_MODELS,
        "sortModel": _short_or_full(SORT_ITEMS, bounds.MAX_SORT_ITEMS),
        "page": st.one_of(st.none(), st.integers(0, 3), st.just(10**12)),
        "pageSize": st.one_of(st.none(), st.integers(1, 30), st.just(10**6)),
    },
)
# One change that takes a filter body just past one bound.
FILTER_PAST_A_BOUND = [
    lambda b, e: {**b, "filterModel": {"items": [e] * (bounds.MAX_FILTER_ITEMS + 1)}},
    lambda b, e: {**b, "searchPanelOptions": {"items": [{**e, "field": PAST_TEXT}]}},
    lambda b, e: {**b, "filterModel": {"items": [{**e, "operator": "o" * 65}]}},
    lambda b, e: {**b, "filterModel": {"items": [{**e, "value": PAST_TEXT}]}},
    lambda b, e: {**b, "filterModel": {"items": [{**e, "value": FILLER}]}},
    lambda b, e: {**b, "filterModel": {"items": [{**e, "value": ["y" * 4094, "abc"]}]}},
    lambda b, e: {
        **b,
        "filterModel": {"items": [{**e, "operator": "isAnyOf", "value": ",".join(FILLER)}]},
    },
    lambda b, e: {**b, "filterModel": {"items": [{**e, "value": [["nested"]]}]}},
    lambda b, e: {**b, "filterModel": {"items": [{**e, "id": {"x": 1}}]}},
    lambda b, e: {**b, "filterModel": {"items": [{**e, "value": "v" * 2100}] * 2}},
    lambda b, e: {**b, "filterModel": {"items": [], "logicOperator": "x" * 65}},
    lambda b, e: {**b, "filterModel": {"quickFilterValues": ["q"] * 65}},
    lambda b, e: {**b, "sortModel": [{"field": "uid", "sort": "asc"}] * 17},
    lambda b, e: {**b, "sortModel": [{"field": PAST_TEXT, "sort": "asc"}]},
    lambda b, e: {
        **b,
        "filterModel": {"items": [{"field": "formFields", "keyPairs": [{"keyPair": "a"}] * 65}]},
    },
]
DATES = st.one_of(
    st.none(),
    st.sampled_from(["", "2020-01-01", "2022-12-12", "2023-2-1", "2024-01-01T00:00:00Z", "x"]),
)
PAIRS = st.one_of(
    st.builds(lambda key, value: f"{key}:{value}", TEXT, TEXT),
    st.builds(lambda key, value: f"{key}:{value}", TEXT, TEXT),
    TEXT,
    st.just("files:" + "x" * (bounds.MAX_TEXT - 6)),
)
SEARCH_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "start_date": DATES,
        "end_date": DATES,
        "key_value_pairs": _short_or_full(PAIRS, bounds.MAX_KEY_VALUE_PAIRS),
        "start": st.integers(0, 20),
        "count": st.integers(1, 20),
    },
)
SEARCH_PAST_A_BOUND = [
    lambda b: {**b, "key_value_pairs": ["a:b"] * (bounds.MAX_KEY_VALUE_PAIRS + 1)},
    lambda b: {**b, "key_value_pairs": ["a:" + PAST_TEXT]},
    lambda b: {**b, "key_value_pairs": ["a:" + "x" * 2100] * 2},
    lambda b: {**b, "start_date": PAST_TEXT},
    lambda b: {**b, "end_date": PAST_TEXT},
]


def _on_postgresql(path: str, body) -> dict:
    with CaptureQueriesContext(connection) as queries:
        response = APIClient().post(path, json.dumps(body), content_type="application/json")
    return {"status": response.status_code, "body": response.json(), "statements": len(queries)}


def _check_both(sqlite_peer, path: str, body) -> dict:
    on_postgresql = _on_postgresql(path, body)
    on_sqlite = sqlite_peer.post(path, body)

    for answer in (on_postgresql, on_sqlite):
        assert answer["status"] < 500, answer
        assert answer["statements"] <= STATEMENT_BUDGET, answer
    assert on_sqlite["status"] == on_postgresql["status"]
    assert on_sqlite["body"] == on_postgresql["body"]
    return on_postgresql


@EXAMPLES
@given(body=FILTER_BODIES)
def test_filter_bodies_answer_alike_on_both_databases_within_the_budget(sqlite_peer, body):
    _check_both(sqlite_peer, "/filterdataproducts", body)


@PAST_EXAMPLES
@given(past=st.sampled_from(FILTER_PAST_A_BOUND), body=FILTER_BODIES, item=ITEMS)
def test_filter_bodies_past_a_bound_are_refused_alike_before_any_query(
    sqlite_peer, past, body, item
):
    answer = _check_both(sqlite_peer, "/filterdataproducts", past(body, item))

    assert answer["status"] == 400
    assert answer["statements"] == 0


@EXAMPLES
@given(body=SEARCH_BODIES)
def test_search_bodies_answer_alike_on_both_databases_within_the_budget(sqlite_peer, body):
    _check_both(sqlite_peer, "/dataproductsearch", body)


@PAST_EXAMPLES
@given(past=st.sampled_from(SEARCH_PAST_A_BOUND), body=SEARCH_BODIES)
def test_search_bodies_past_a_bound_are_refused_alike_before_any_query(sqlite_peer, past, body):
    answer = _check_both(sqlite_peer, "/dataproductsearch", past(body))

    assert answer["status"] == 422
    assert answer["statements"] == 0
