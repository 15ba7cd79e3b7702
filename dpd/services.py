"""Catalogue services: ingest one product now, from the volume or from a body.

Both paths end in `DataProduct.fields_from`, the same row-building code the
indexer uses, so a product ingested here is indistinguishable from one the
next re-index finds: same uid (reference 4.1, 8.2 #12), same columns, and
(mtime, size) recorded so the indexer skips the file instead of re-reading it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.db import transaction

from dpd.metadata import MetadataError, from_ingested_document, from_volume_file
from dpd.models import DataProduct
from dpd.volume import volume_root

# Enough rounds to undo any realistic multiple encoding ("%252e%252e" and worse).
_MAX_DECODE_ROUNDS = 5
# The file system's limits (Linux NAME_MAX and PATH_MAX, in bytes): a longer
# name cannot exist, and asking the file system about it is an OSError.
_MAX_NAME_BYTES = 255
_MAX_PATH_BYTES = 4096


class UnsafePath(ValueError):
    """A requested path that would leave the volume (the API answers 400)."""


class MetadataFileMissing(LookupError):
    """No metadata file where the request points (the API answers 404)."""


class InvalidMetadataFile(ValueError):
    """The metadata file exists but cannot become a product (400, with the reason)."""


def check_relative_path(raw: str) -> PurePosixPath:
    """A volume-relative path from a request, refused when it could escape.

    `..`, absolute paths and NUL are refused in the text as sent and in every
    percent-decoded form of it, so a proxy or a later decoding step can never
    turn an accepted string into a traversal.
    """
    candidates = [raw]
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(candidates[-1])
        if decoded == candidates[-1]:
            break
        candidates.append(decoded)
    for text in candidates:
        if "\x00" in text:
            raise UnsafePath("the path contains a NUL byte")
        if text.startswith(("/", "\\")) or PurePosixPath(text).is_absolute():
            raise UnsafePath(f"{raw!r} is an absolute path; give a path relative to the volume")
        if ".." in PurePosixPath(text.replace("\\", "/")).parts:
            raise UnsafePath(f"{raw!r} contains '..'; give a path inside the volume")
    path = PurePosixPath(raw)
    if not path.parts or str(path) == ".":
        raise UnsafePath("the path is empty")
    if len(raw.encode("utf-8", "surrogatepass")) > _MAX_PATH_BYTES:
        raise UnsafePath(f"the path is longer than {_MAX_PATH_BYTES} bytes")
    if any(len(part.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES for part in path.parts):
        raise UnsafePath(f"a name in the path is longer than {_MAX_NAME_BYTES} bytes")
    return path


def _resolve_metadata_file(relative: PurePosixPath) -> tuple[Path, str]:
    """(real file, path relative to the real volume root) for a folder or file.

    Symlinks are resolved before the containment check, so a link inside the
    volume that points outside it is refused like `..`.
    """
    root = volume_root()
    real_root = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root / relative))
    if target != real_root and real_root not in target.parents:
        raise UnsafePath(f"{str(relative)!r} leads outside the volume")
    if target.is_dir():
        target = target / settings.METADATA_FILE_NAME
        if target.is_symlink():
            real = Path(os.path.realpath(target))
            if real_root not in real.parents:
                raise UnsafePath(f"{str(relative)!r} leads outside the volume")
            target = real
    if not target.is_file():
        shown = relative
        if relative.name != settings.METADATA_FILE_NAME:
            shown = relative / settings.METADATA_FILE_NAME
        raise MetadataFileMissing(f"Metadata file not found: {shown.as_posix()}")
    if target.name != settings.METADATA_FILE_NAME:
        raise InvalidMetadataFile(
            f"{relative.as_posix()!r} is not a product folder or a "
            f"{settings.METADATA_FILE_NAME} file"
        )
    return target, target.relative_to(real_root).as_posix()


def product_ingest_folder(relative: str) -> DataProduct:
    """Index the product folder (or metadata file) at `relative` now.

    The uid hashes the configured root string plus the folder relative to the
    real volume root, exactly as the indexer does, so ingesting a folder and
    re-indexing it later never make two products.
    """
    checked = check_relative_path(relative)
    try:
        path, relative_file = _resolve_metadata_file(checked)
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            # Read one byte past the limit so an oversized file is refused, not cut.
            data = handle.read(settings.METADATA_MAX_BYTES + 1)
    except OSError as exc:  # unreadable, a loop of links, ...: the caller's 400
        raise InvalidMetadataFile(
            f"cannot read {checked.as_posix()}: {exc.strerror or exc}"
        ) from None
    try:
        product = from_volume_file(
            data,
            configured_root=settings.PERSISTENT_STORAGE_PATH,
            relative_metadata_file=relative_file,
            max_bytes=settings.METADATA_MAX_BYTES,
        )
    except MetadataError as exc:
        raise InvalidMetadataFile(f"Invalid metadata file {relative_file}: {exc}") from None
    fields = DataProduct.fields_from(product)
    fields.update(
        source=DataProduct.Source.VOLUME,
        file_mtime_ns=stat.st_mtime_ns,
        file_size=stat.st_size,
    )
    with transaction.atomic():
        row, _ = DataProduct.objects.update_or_create(metadata_file=relative_file, defaults=fields)
    return row


def product_ingest_request(
    execution_block: str | None, relative_path_name: str | None
) -> DataProduct:
    """/ingestnewdataproduct: `relativePathName` when it names a product inside
    the volume, else `<root>/<execution_block>` (reference 2.10 [rec]).

    Both are checked for escapes first: an unsafe value is refused even when
    the other one would have worked. A `relativePathName` that is safe but not
    found falls back to the execution block, because the SKA DPD API's own
    example sends one relative to the volume's parent ("product/<eb>").
    """
    candidates = [value for value in (relative_path_name, execution_block) if value]
    if not candidates:
        raise UnsafePath("give execution_block or relativePathName")
    for value in candidates:
        check_relative_path(value)
    missing: MetadataFileMissing | None = None
    for value in candidates:
        try:
            return product_ingest_folder(value)
        except MetadataFileMissing as exc:
            missing = missing or exc
    assert missing is not None
    raise missing


def product_ingest_metadata(document: Any) -> DataProduct:
    """Store a posted metadata document as a product without files.

    Re-posting the same execution block updates the same product: the uid
    hashes "<execution_block>:None" (reference 2.11).
    """
    product = from_ingested_document(document)
    fields = DataProduct.fields_from(product)
    fields.update(source=DataProduct.Source.API, file_mtime_ns=None, file_size=None)
    with transaction.atomic():
        row, _ = DataProduct.objects.update_or_create(uid=product.uid, defaults=fields)
    return row
