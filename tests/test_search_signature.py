"""Search signatures (dpd.search_text): a product that matches a key:value
pair always passes the signature test, so the window never loses a match to
it; what passes and does not match is left out by the pattern."""

from __future__ import annotations

import re
from importlib import import_module
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from dpd.models import DataProduct
from dpd.search_text import (
    build_search_text,
    key_value_pattern,
    signature,
    signature_mask,
)
from tests.test_api_search import OPEN_IN_ORDER, WIDE, folders, search

# Names and values of any characters, the separators and non-ASCII included.
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)


def covers(text_signature: str, mask: str) -> bool:
    held, needed = int(text_signature[1:], 16), int(mask[1:], 16)
    return held & needed == needed


@settings(max_examples=300, deadline=None)
@given(
    row=st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.lists(TEXT, max_size=3))),
    data=st.data(),
)
def test_every_pair_a_row_matches_passes_its_signature(row, data):
    """The property the window relies on, over arbitrary rows: any substring
    of a field's name with any substring of its value."""
    if not row:
        return
    name = data.draw(st.sampled_from(sorted(row)))
    value = str(row[name])
    key_start = data.draw(st.integers(0, len(name)))
    key = name[key_start : data.draw(st.integers(key_start, len(name)))]
    value_start = data.draw(st.integers(0, len(value)))
    part = value[value_start : data.draw(st.integers(value_start, len(value)))]
    text = build_search_text(row)
    if re.search(key_value_pattern(key, part), text):
        assert covers(signature(text), signature_mask([(key, part)]))


def test_a_value_the_text_does_not_hold_fails_the_signature():
    text = build_search_text({"obscore.instrument_name": "SKA-Low", "config.script": "imaging"})
    assert covers(signature(text), signature_mask([("instrument", "SKA-Low")]))
    assert not covers(signature(text), signature_mask([("instrument", "SKA-Mid")]))


@pytest.fixture
def client() -> APIClient:
    return APIClient()


@pytest.mark.usefixtures("indexed_sample")
def test_a_key_and_a_value_held_by_different_fields_match_nothing(client, settings):
    # Both strings are in the search texts (the signature passes them); no
    # execution_block holds the value.
    settings.SEARCH_WINDOW_ROWS = 2000
    body = {**WIDE, "key_value_pairs": ["execution_block:TestDataFile"]}
    assert folders(search(client, body)) == []
    settings.SEARCH_WINDOW_ROWS = 0
    assert folders(search(client, body)) == []


@pytest.mark.usefixtures("indexed_sample")
def test_products_without_a_signature_are_still_found(client, settings):
    settings.SEARCH_WINDOW_ROWS = 2000
    DataProduct.objects.update(search_signature=None)
    body = {**WIDE, "key_value_pairs": ["interface:ska-data-product-meta"]}
    assert folders(search(client, body)) == OPEN_IN_ORDER


@pytest.mark.usefixtures("indexed_sample")
def test_the_migration_gives_existing_products_the_signature_of_their_text():
    migration = import_module("dpd.migrations.0006_search_signature")
    DataProduct.objects.update(search_signature=None)
    migration.fill_signatures(apps, SimpleNamespace(connection=connection))
    products = DataProduct.objects.all()
    assert products.count() == 15
    for product in products:
        assert _bits(product.search_signature) == _bits(signature(product.search_text))


def _bits(value: str) -> int:
    """A signature as stored, whichever form the database gives back: the
    hex input (SQLite keeps it) or PostgreSQL's binary digits."""
    return int(value[1:], 16) if value.startswith("x") else int(value, 2)
