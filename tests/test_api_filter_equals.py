"""The grid's equals, isAnyOf and doesNotEqual on a row field (reference 3.6
[rec]): the whole value, case-insensitively; isEmpty and isNotEmpty: a value
that is not "" under the field's exact name. Answered from the products'
field values (DataProduct.field_values) on every database."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection
from rest_framework.test import APIClient

from dpd.metadata import from_volume_file
from dpd.models import DataProduct
from dpd.search_text import LONG_ELEMENT, clean, field_values, fold

pytestmark = pytest.mark.usefixtures("indexed_sample")


def shown(*items, logic="and") -> set[str]:
    body = {"filterModel": {"items": list(items), "logicOperator": logic}, "pageSize": 100}
    response = APIClient().post("/filterdataproducts", body, format="json")
    assert response.status_code == 200, response.content
    return {row["uid"] for row in response.json()["data"]}


def item(field, operator, value):
    return {"field": field, "operator": operator, "value": value, "id": 1}


def by_rows(field: str, values: list[str], *, negated: bool = False) -> set[str]:
    """What the grid promises, read from each open product's flattened row:
    a field named `field` (letter case aside) whose text equals one of the
    values, letter case aside; negated, every other open product."""
    wanted = {fold(clean(v)) for v in values}
    found = set()
    for product in DataProduct.objects.filter(access_group__isnull=True):
        row = product.flat_row()
        held = {fold(clean(str(value))) for name, value in row.items() if fold(name) == fold(field)}
        if bool(held & wanted) != negated:
            found.add(str(product.uid))
    return found


@pytest.mark.parametrize(
    ("field", "operator", "value", "values"),
    [
        ("context.observer", "equals", "aiv_PERSON_1", ["aiv_PERSON_1"]),
        ("context.observer", "equals", "None", ["None"]),  # the text the YAML holds
        (
            "config.processing_block",
            "isAnyOf",
            ["PB-M001-20191031-12345", "x"],
            ["PB-M001-20191031-12345", "x"],
        ),
        (
            "context.observer",
            "isAnyOf",
            "AIV_person_1, aiv_person_2",
            ["AIV_person_1", "aiv_person_2"],
        ),
        ("context.observer", "doesNotEqual", "AIV_person_1", ["AIV_person_1"]),  # and the rest
        ("obscore.pol_xel", "equals", "4", ["4"]),  # a number, as its text
        (
            "metadata_file",
            "equals",
            "EB-M005-20231031-12345/SKA-data-product.yaml",
            ["EB-M005-20231031-12345/SKA-data-product.yaml"],
        ),
    ],
)
def test_equality_filters_compare_the_whole_value_letter_case_aside(field, operator, value, values):
    expected = by_rows(field, values, negated=operator == "doesNotEqual")
    assert expected, "the test must match something to mean anything"
    assert shown(item(field, operator, value)) == expected


def test_a_prefix_of_the_value_is_not_equal_to_it():
    assert by_rows("context.observer", ["AIV_person_1"])
    assert shown(item("context.observer", "equals", "AIV_person")) == set()


def test_an_item_on_a_field_named_in_other_letters_is_ignored():
    # Field names come from the catalogue as they are written (reference 3.6).
    assert shown(item("CONTEXT.Observer", "equals", "AIV_person_2")) == shown()


@pytest.mark.parametrize(
    "field", ["context.observer", "context.notes", "obscore.pol_xel", "execution_block"]
)
def test_is_not_empty_finds_the_products_holding_a_value_and_is_empty_the_others(field):
    open_products = DataProduct.objects.filter(access_group__isnull=True)
    holding = {str(p.uid) for p in open_products if clean(str(p.flat_row().get(field, ""))) != ""}
    assert holding, "the field must be held by some product to mean anything"
    assert shown(item(field, "isNotEmpty", None)) == holding
    assert shown(item(field, "isEmpty", None)) == {str(p.uid) for p in open_products} - holding


def with_notes(execution_block: str, notes: str) -> str:
    """The uid of a new open product whose context.notes is `notes` (YAML)."""
    document = f"execution_block: {execution_block}\ncontext:\n  notes: {notes}\nfiles: []\n"
    product = from_volume_file(
        document.encode(),
        configured_root="/mnt/data/product",
        relative_metadata_file=f"{execution_block}/ska-data-product.yaml",
    )
    DataProduct.objects.create(**DataProduct.fields_from(product))
    return str(product.uid)


def test_a_blank_value_is_empty_and_a_space_is_not():
    blank, space = with_notes("eb-blank-20240101-0", '""'), with_notes("eb-blank-20240101-1", '" "')
    empty = shown(item("context.notes", "isEmpty", None))
    assert blank in empty and space not in empty
    assert space in shown(item("context.notes", "isNotEmpty", None))


@pytest.fixture
def long_notes() -> dict[str, str]:
    """Two open products whose notes are longer than an element is stored
    whole (dpd.search_text.LONG_ELEMENT) and differ in their last character."""
    base = "Calibration notes " + "x" * LONG_ELEMENT
    return {
        notes: with_notes(f"eb-long-20240101-{n}", notes)
        for n, notes in enumerate((base + "A", base + "B"))
    }


def test_a_long_value_is_equal_only_to_itself(long_notes):
    (first, second) = long_notes
    assert shown(item("context.notes", "equals", first.upper())) == {long_notes[first]}
    assert shown(item("context.notes", "equals", first[:-1])) == set()
    assert shown(item("context.notes", "isAnyOf", [second, "short"])) == {long_notes[second]}
    unequal = shown(item("context.notes", "doesNotEqual", second))
    assert long_notes[first] in unequal and long_notes[second] not in unequal


def test_a_filter_mixing_equality_and_substrings_ors_them(long_notes):
    (first, _) = long_notes
    either = shown(
        item("context.notes", "equals", first),
        item("execution_block", "contains", "m005"),
        logic="or",
    )
    assert either == {long_notes[first], *by_rows("execution_block", ["eb-m005-20231031-12345"])}


def test_a_fill_cut_short_goes_on_with_the_rows_it_has_not_filled():
    filled = DataProduct.objects.order_by("pk").first()
    DataProduct.objects.exclude(pk=filled.pk).update(field_values=None)
    DataProduct.objects.filter(pk=filled.pk).update(field_values=["kept"])
    migration = import_module("dpd.migrations.0014_fill_field_values")
    migration.fill_field_values(apps, SimpleNamespace(connection=connection))
    assert DataProduct.objects.get(pk=filled.pk).field_values == ["kept"]
    assert not DataProduct.objects.filter(field_values__isnull=True).exists()


def test_the_migration_gives_existing_products_the_field_values_of_their_text():
    expected = shown(item("context.observer", "equals", "AIV_person_1"))
    DataProduct.objects.update(field_values=None)
    assert shown(item("context.observer", "equals", "AIV_person_1")) == set()
    migration = import_module("dpd.migrations.0014_fill_field_values")
    migration.fill_field_values(apps, SimpleNamespace(connection=connection))
    assert len(expected) == 5
    assert shown(item("context.observer", "equals", "AIV_person_1")) == expected
    for product in DataProduct.objects.all():  # what the writers store, element for element
        assert product.field_values == field_values(product.search_text)
