"""Read and validate ska-data-product.yaml documents and derive their fields.

The derivations follow reference/ska-dpd-api.md section 4 exactly, because
uids and dates are part of the wire contract: a dashboard link or an
annotation made against the upstream API must find the same product here.
Nothing in this module touches the database, so worker processes can use it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

# Ingested (REST) metadata has no folder: the upstream hashes and stores the
# literal string "None" (reference 4.1, 4.3), and the dashboard tests for it.
NO_FOLDER = "None"
FALLBACK_DATE = dt.date(1970, 1, 1)
DEFAULT_MAX_BYTES = 1024 * 1024
# Guards against alias bombs: a document whose expanded tree is larger than
# this, or nested deeper, is refused before anything serialises it.
MAX_NODES = 200_000
MAX_DEPTH = 64
# The catalogue's column sizes (dpd.models.DataProduct): a longer value is a
# clear error for its file, never a failed batch or a 500.
MAX_NAME_LENGTH = 255  # execution_block, context.access_group
MAX_PATH_LENGTH = 1024  # metadata_file, dataproduct_file


class MetadataError(ValueError):
    """A metadata document that cannot become a product; the message says why."""


@dataclass(frozen=True)
class ProductMetadata:
    """A validated document and everything derived from it."""

    document: dict[str, Any]
    execution_block: str
    date_created: dt.date
    uid: uuid.UUID
    access_group: str | None
    # Paths relative to the volume root; None for REST-ingested metadata.
    dataproduct_file: str | None
    metadata_file: str | None


def product_uid(execution_block: str, folder: str) -> uuid.UUID:
    """sha256("<eb>:<folder>") cut into 8-4-4-4-12 hex (not an RFC 4122 uuid)."""
    digest = hashlib.sha256(f"{execution_block}:{folder}".encode()).hexdigest()
    return uuid.UUID(digest[:32])


def hashed_folder(configured_root: str, relative_folder: str) -> str:
    """The folder string the upstream hashes: the root *as configured* plus the
    relative folder, normalised by pathlib (reference 4.1)."""
    return str(PurePosixPath(configured_root) / relative_folder)


def date_from_execution_block(execution_block: str) -> dt.date:
    """The third dash-separated part as YYYYMMDD, else 1970-01-01 (reference 4.2)."""
    parts = execution_block.split("-")
    if len(parts) < 3:
        return FALLBACK_DATE
    stamp = parts[2]
    if len(stamp) != 8 or not stamp.isdigit():
        return FALLBACK_DATE
    try:
        return dt.datetime.strptime(stamp, "%Y%m%d").date()
    except ValueError:
        return FALLBACK_DATE


def load_yaml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse one YAML document with libyaml, refusing what would hurt us later."""
    if len(data) > max_bytes:
        raise MetadataError(f"file is {len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetadataError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        document = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MetadataError(f"YAML syntax error{where}: {problem}") from None
    _check_tree(document)
    return document


def _check_tree(document: Any) -> None:
    """Walk the tree as JSON would expand it; stop at the budget, never exponential.

    Also refuse NUL characters in keys and strings: PostgreSQL cannot store
    them in jsonb or text, and a refused document is an error with its path,
    where a stored one would be a failed batch (or a 500 on ingest).
    """
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise MetadataError(
                f"document expands to more than {MAX_NODES} values (YAML alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise MetadataError(f"document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, Mapping):
            if any(isinstance(key, str) and "\x00" in key for key in node):
                raise MetadataError("a key contains a NUL character")
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
        elif (isinstance(node, str) and "\x00" in node) or (isinstance(node, bytes) and 0 in node):
            raise MetadataError("a value contains a NUL character")


def validate_document(document: Any, *, require_files_list: bool) -> str:
    """Check what every product needs and return its execution block.

    Volume files must have `files` as a list (the download and the grid rely on
    it); REST-ingested metadata may not (reference 2.11 accepts an object).
    """
    if document is None:
        raise MetadataError("empty document")
    if not isinstance(document, dict):
        raise MetadataError(f"document is a {type(document).__name__}, not a mapping")
    if any(not isinstance(key, str) for key in document):
        raise MetadataError("top-level keys must be strings")
    if document.get("execution_block") is None:
        raise MetadataError("missing execution_block")
    execution_block = document["execution_block"]
    if not isinstance(execution_block, str):
        raise MetadataError(
            f"execution_block must be a string, not {type(execution_block).__name__}"
        )
    if not execution_block.strip():
        raise MetadataError("execution_block is empty")
    if "/" in execution_block or "\x00" in execution_block:
        raise MetadataError("execution_block must not contain '/' or NUL")
    if len(execution_block) > MAX_NAME_LENGTH:
        raise MetadataError(f"execution_block is longer than {MAX_NAME_LENGTH} characters")
    context = document.get("context")
    if context is not None and not isinstance(context, dict):
        raise MetadataError(f"context must be a mapping, not {type(context).__name__}")
    access_group = (context or {}).get("access_group")
    if access_group is not None and not isinstance(access_group, str):
        raise MetadataError(
            f"context.access_group must be a single string, not {type(access_group).__name__}"
        )
    if access_group is not None and len(access_group) > MAX_NAME_LENGTH:
        raise MetadataError(f"context.access_group is longer than {MAX_NAME_LENGTH} characters")
    files = document.get("files")
    if require_files_list and files is not None and not isinstance(files, list):
        raise MetadataError(f"files must be a list, not {type(files).__name__}")
    return execution_block


def to_json_safe(value: Any) -> Any:
    """YAML gives dates, datetimes and non-string keys that JSON cannot hold."""
    if isinstance(value, dict):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_json_safe(item) for item in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    return value


def from_volume_file(
    data: bytes,
    *,
    configured_root: str,
    relative_metadata_file: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ProductMetadata:
    """A metadata file found on the volume, at a path relative to the root."""
    if len(relative_metadata_file) > MAX_PATH_LENGTH:
        raise MetadataError(f"its path is longer than {MAX_PATH_LENGTH} characters")
    document = load_yaml(data, max_bytes=max_bytes)
    execution_block = validate_document(document, require_files_list=True)
    relative_folder = str(PurePosixPath(relative_metadata_file).parent)
    return _derive(
        to_json_safe(document),
        execution_block,
        uid_folder=hashed_folder(configured_root, relative_folder),
        dataproduct_file=relative_folder,
        metadata_file=relative_metadata_file,
    )


def from_ingested_document(document: Any) -> ProductMetadata:
    """Metadata posted to /ingestnewmetadata: no files, folder "None"."""
    execution_block = validate_document(document, require_files_list=False)
    _check_tree(document)
    return _derive(
        to_json_safe(document),
        execution_block,
        uid_folder=NO_FOLDER,
        dataproduct_file=None,
        metadata_file=None,
    )


def _derive(
    document: dict[str, Any],
    execution_block: str,
    *,
    uid_folder: str,
    dataproduct_file: str | None,
    metadata_file: str | None,
) -> ProductMetadata:
    # Derived fields are ours, never the document's (reference 2.11, 8.2 #14).
    for derived in ("date_created", "dataproduct_file", "metadata_file", "uid"):
        document.pop(derived, None)
    context = document.get("context") or {}
    return ProductMetadata(
        document=document,
        execution_block=execution_block,
        date_created=date_from_execution_block(execution_block),
        uid=product_uid(execution_block, uid_folder),
        access_group=context.get("access_group"),
        dataproduct_file=dataproduct_file,
        metadata_file=metadata_file,
    )


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys; lists stay lists; null leaves vanish
    (reference 4.6)."""
    return dict(_flat_items(document, prefix))


def _flat_items(document: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flat_items(value, f"{name}.")
        elif value is not None:
            yield name, value
