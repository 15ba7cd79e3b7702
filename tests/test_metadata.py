"""Parsing and derived fields of ska-data-product.yaml (reference sections 4 and 7)."""

import datetime as dt
import re
import uuid

import pytest

from dpd import metadata
from dpd.metadata import MetadataError
from tests.conftest import FIXTURES, UPSTREAM_ROOT

# Reference section 7: folder -> (execution_block, date_created, access_group, uid).
EXPECTED = {
    "eb-largefiletest-20241009-00001": (
        None,
        "2024-10-09",
        None,
        "603e0a65-4645-7d10-1c2e-79f00555369f",
    ),
    "eb-m001-20221212-12345": (None, "2022-12-12", None, "c05bce72-4a6e-234f-06e7-02dc92aba3f4"),
    "eb-m001-20230921-245": (None, "2023-09-21", None, "e3a44bb6-bb9f-f1a5-69bc-9b3ec8622a53"),
    "eb-m002-20221212-12345": (None, "2022-12-12", None, "d5cb1654-07a1-d256-4f33-7abfb67b2b0c"),
    "eb-m003-20191130-12345": (None, "2019-11-30", None, "e43dbb83-33b5-e80d-ec94-f51e0fd504c5"),
    "eb-m004-20191031-12345": (None, "2019-10-31", None, "7ac655e6-8a56-fcc3-cd9a-d901cf91c03f"),
    "eb-m005-20231031-12345": (None, "2023-10-31", None, "6a11ddaa-6b45-6759-47e7-a5abd5105b0e"),
    "eb-notebook-20240201-54576/ska-sdp/pb-notebookpo-20240201-54576": (
        "eb-notebook-20240201-54576",
        "2024-02-01",
        None,
        "f88fb55f-2b16-3a68-e8ba-da24ae5a2255",
    ),
    "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576": (
        "eb-notebook-20240201-54576",
        "2024-02-01",
        None,
        "7cfae145-92be-9c4d-5f4b-d1fdc6ebb89a",
    ),
    "eb-notebook-20240320-83046/pb-notebookvr-20240320-83046": (
        "eb-notebook-20240320-83046",
        "2024-03-20",
        "ac9d0e43-931d-455d-b916-7e508db78a8e",
        "a0a2a10f-e382-31ba-0949-9a79204dfcad",
    ),
    "eb-orcatest-20240814-94773/scan1-5": (
        "eb-orcatest-20240814-94773",
        "2024-08-14",
        "ac9d0e43-931d-455d-b916-7e508db78a8e",
        "790e8ce4-d864-0651-5209-38768451426d",
    ),
    "eb-test-20200325-00001": (None, "2020-03-25", None, "e38eb2bb-684f-de46-63ec-bd64deff6ff0"),
    "eb-test-20230214-07904": (None, "2023-02-14", None, "00e602be-7c9d-8ac3-a769-d36f87ddcb44"),
    "eb-test-20230401-12345": (None, "2023-04-01", None, "cdd50d4d-9158-abb2-1059-0d67312ecb2d"),
    "eb-test-20240513-47584/pb-testrealtime-20240513-47584": (
        "eb-test-20240513-47584",
        "2024-05-13",
        "not-in-my-access-groups",
        "81bc8c1b-2a27-b24d-3941-f95885c103fb",
    ),
}
REJECTED = {
    "eb-none-19700101-00001": "missing execution_block",
    "eb-none-19700101-00002": "missing execution_block",
    "eb-none-19700101-00003": "empty document",
}


def parse_fixture(folder: str) -> metadata.ProductMetadata:
    relative = f"{folder}/ska-data-product.yaml"
    return metadata.from_volume_file(
        (FIXTURES / relative).read_bytes(),
        configured_root=UPSTREAM_ROOT,
        relative_metadata_file=relative,
    )


def test_the_fixture_volume_has_eighteen_metadata_files():
    found = {str(p.parent.relative_to(FIXTURES)) for p in FIXTURES.rglob("ska-data-product.yaml")}
    assert found == set(EXPECTED) | set(REJECTED)


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_each_valid_fixture_gives_the_reference_values(folder):
    eb, date_created, access_group, uid = EXPECTED[folder]
    product = parse_fixture(folder)
    assert product.execution_block == (eb or folder)
    assert product.date_created.isoformat() == date_created
    assert product.access_group == access_group
    assert str(product.uid) == uid
    assert product.dataproduct_file == folder
    assert product.metadata_file == f"{folder}/ska-data-product.yaml"


@pytest.mark.parametrize("folder", sorted(REJECTED))
def test_each_invalid_fixture_is_rejected_with_its_reason(folder):
    with pytest.raises(MetadataError, match=REJECTED[folder]):
        parse_fixture(folder)


@pytest.mark.parametrize(
    ("hashed", "uid"),
    [
        ("eb-test-20240806-99999:None", "1f8250d0-0e2f-2269-1d9a-ad465ae15d5c"),
        ("eb-test-20191031-99999:None", "aa777038-1179-7430-b4c4-01b3afa5d14e"),
        (
            "eb-test-20200325-00001:/mnt/data/product/eb-test-20200325-00001",
            "fafb7516-9de8-790a-0b6f-66acddbe6776",
        ),
        (
            "eb-m005-20231031-12345:/mnt/data/product/eb-m005-20231031-12345",
            "1eee8638-3333-9879-a090-535cea4a091b",
        ),
    ],
)
def test_uids_hash_the_reference_strings(hashed, uid):
    eb, folder = hashed.split(":", 1)
    assert str(metadata.product_uid(eb, folder)) == uid


@pytest.mark.parametrize(
    "configured", ["/mnt/data/product/", "/mnt/data/product", "/mnt//data/./product"]
)
def test_the_configured_root_is_normalised_like_pathlib(configured):
    folder = metadata.hashed_folder(configured, "eb-m005-20231031-12345")
    assert str(metadata.product_uid("eb-m005-20231031-12345", folder)) == (
        "1eee8638-3333-9879-a090-535cea4a091b"
    )


def test_a_leading_dot_slash_in_the_root_hashes_like_upstream_tests():
    product = metadata.from_volume_file(
        (FIXTURES / "eb-m005-20231031-12345/ska-data-product.yaml").read_bytes(),
        configured_root="./tests/test_files/product",
        relative_metadata_file="eb-m005-20231031-12345/ska-data-product.yaml",
    )
    assert str(product.uid) == "6a11ddaa-6b45-6759-47e7-a5abd5105b0e"


@pytest.mark.parametrize(
    ("execution_block", "expected"),
    [
        ("eb-m001-20230921-245", dt.date(2023, 9, 21)),
        ("type-generatorID-20230411-localSeq", dt.date(2023, 4, 11)),
        ("eb-m001-20231345-1", dt.date(1970, 1, 1)),
        ("invalid-format", dt.date(1970, 1, 1)),
        ("eb-m001-2023101-1", dt.date(1970, 1, 1)),  # strptime would accept 7 digits
        ("eb-m001-2023-10-01", dt.date(1970, 1, 1)),
    ],
)
def test_date_created_comes_from_the_execution_block(execution_block, expected):
    assert metadata.date_from_execution_block(execution_block) == expected


def test_yaml_1_1_types_are_kept_as_upstream_loads_them():
    doc = parse_fixture("eb-test-20230401-12345").document
    crcs = [f.get("crc") for f in doc["files"]]
    assert 0 in crcs  # `crc: 00000000` loads as the integer 0
    doc = parse_fixture("eb-m001-20230921-245").document
    assert doc["obscore"]["target_name"] == "None"
    assert doc["obscore"]["pol_states"] is None
    assert doc["config"]["version"] == "0.1.3"


def test_flattening_joins_objects_keeps_lists_and_drops_nulls():
    doc = parse_fixture("eb-m001-20230921-245").document
    flat = metadata.flatten(doc)
    assert flat["context.observer"] == "PST_jc"
    assert flat["obscore.calib_level"] == 0
    assert "obscore.pol_states" not in flat
    assert isinstance(flat["files"], list)
    assert flat["files"][0]["path"] == "pst-low/245/data"
    assert "context" not in flat


def test_empty_context_contributes_no_keys():
    flat = metadata.flatten(parse_fixture("eb-test-20200325-00001").document)
    assert not [key for key in flat if key.startswith("context")]


def test_ingested_metadata_hashes_the_literal_none_and_overwrites_derived_fields():
    product = metadata.from_ingested_document(
        {
            "execution_block": "eb-test-20191031-99999",
            "context": {},
            "config": {},
            "obscore": {},
            "files": [],
            "date_created": "2000-01-01",
            "metadata_file": "/etc/passwd",
        }
    )
    assert product.uid == uuid.UUID("aa777038-1179-7430-b4c4-01b3afa5d14e")
    assert product.date_created == dt.date(2019, 10, 31)
    assert "date_created" not in product.document
    assert "metadata_file" not in product.document
    assert product.dataproduct_file is None


def test_ingested_metadata_may_have_files_as_an_object():
    import json

    body = json.loads((FIXTURES / "example_metadata.json").read_text())
    product = metadata.from_ingested_document(body)
    assert str(product.uid) == "328975cf-0131-d5a5-ec25-22f03789df80"
    assert product.date_created == dt.date(2019, 10, 31)


# --- hostile documents -------------------------------------------------------


def load(text: bytes | str, **kwargs):
    data = text.encode() if isinstance(text, str) else text
    return metadata.from_volume_file(
        data, configured_root="/v", relative_metadata_file="eb/ska-data-product.yaml", **kwargs
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("execution_block: [unclosed", "YAML syntax error at line 2, column 1"),
        ("- just\n- a list\n", "document is a list, not a mapping"),
        ("'a scalar'", "document is a str, not a mapping"),
        ("interface: x\nfiles: []\n", "missing execution_block"),
        ("execution_block: null\n", "missing execution_block"),
        ("execution_block: 20230101\n", "execution_block must be a string, not int"),
        ("execution_block: ''\n", "execution_block is empty"),
        ("execution_block: ../../etc\n", "must not contain '/'"),
        ("execution_block: eb-a-20200101-1\nfiles: {path: x}\n", "files must be a list, not dict"),
        ("execution_block: eb-a-20200101-1\ncontext: [1]\n", "context must be a mapping"),
        (
            "execution_block: eb-a-20200101-1\ncontext: {access_group: [a, b]}\n",
            "access_group must be a single string, not list",
        ),
        (b"execution_block: eb-\xff\xfe-20200101\n", "not UTF-8 text"),
    ],
)
def test_bad_documents_are_refused_with_a_clear_reason(content, reason):
    with pytest.raises(MetadataError, match=re.escape(reason)):
        load(content)


def test_an_alias_bomb_is_refused_without_expanding_it():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghij":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
    bomb += "execution_block: eb-bomb-20200101-1\n"
    with pytest.raises(MetadataError, match="alias bomb"):
        load(bomb)


def test_a_self_referencing_alias_is_refused():
    with pytest.raises(MetadataError, match="nested deeper"):
        load("execution_block: eb-a-20200101-1\nloop: &l [*l]\n")


def test_a_file_over_the_size_limit_is_refused():
    big = "execution_block: eb-a-20200101-1\nnotes: '" + "x" * 2048 + "'\n"
    with pytest.raises(MetadataError, match="over the 1024-byte limit"):
        load(big, max_bytes=1024)


def test_an_empty_access_group_is_kept_so_the_product_hides_from_everyone():
    product = load("execution_block: eb-a-20200101-1\ncontext: {access_group: ''}\n")
    assert product.access_group == ""


def test_yaml_dates_become_json_safe_strings():
    product = load("execution_block: eb-a-20200101-1\nobserved: 2024-01-02\n")
    assert product.document["observed"] == "2024-01-02"
