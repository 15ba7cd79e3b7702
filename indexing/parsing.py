"""The indexer's work in worker processes: walk chunks of the volume, parse
changed metadata files. Never touches the database.

YAML parsing is the indexer's CPU bottleneck, so the indexer hands chunks of
changed files to a process pool running `parse_chunk`; on a large volume the
walk itself is spread over the same pool (`scan_chunk`). Everything here is
picklable and database-free (building column values from a model class
runs no query): a worker forked from a process with an open database
connection must never use it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import sys
from dataclasses import dataclass
from typing import Any

from dpd.metadata import MetadataError, from_volume_file
from dpd.models import DataProduct
from indexing import holder, shutdown
from indexing.scanner import Scan, scan

# DataProduct.fields_from() columns that hold JSON, and the one that holds an array.
JSON_FIELDS = ("metadata", "field_types")
ARRAY_FIELD = "field_values"


@dataclass(frozen=True)
class Parsed:
    """One file's outcome: a product, or the reason it is not one.

    mtime_ns and size come from the opened file, so they describe the bytes
    that were parsed even if the file changed after the walk saw it.
    """

    path: str
    mtime_ns: int | None
    size: int | None
    # DataProduct column values (DataProduct.fields_from), computed here so
    # the derived search columns cost worker time, not the writer's; JSON
    # and array columns as text when parsed with `copy_text`.
    fields: dict[str, Any] | None = None
    error: str | None = None


PR_SET_PDEATHSIG = 1


def init_parse_process() -> None:
    """Start of every parse process (forked from the process running the index).

    It survives signals sent to the whole process group (the run shuts its
    pool down at a batch boundary), dies with the run's process (a SIGKILLed
    worker leaves no parse process behind to hold its claim's socket), and
    lets go of that socket (only the holder proves itself alive).
    """
    shutdown.ignore_stop_signals()
    holder.drop_inherited_sockets()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def parse_chunk(
    root: str, configured_root: str, paths: list[str], max_bytes: int, copy_text: bool = False
) -> list[Parsed]:
    """Parse the metadata files at `paths` (relative to `root`)."""
    return [parse_one(root, configured_root, path, max_bytes, copy_text) for path in paths]


def parse_one(
    root: str, configured_root: str, path: str, max_bytes: int, copy_text: bool = False
) -> Parsed:
    """One file's outcome. With `copy_text` the JSON and array columns come
    as the text PostgreSQL reads (what the writer streams with COPY): the
    workers pay for json.dumps and the array literal, not the one writing
    process (psycopg adapts a list of 30 texts in ~54 us, the literal takes
    ~5 us)."""
    try:
        data, info = _read(os.path.join(root, path), max_bytes)
    except OSError as exc:
        return Parsed(path, None, None, error=f"cannot read: {exc.strerror or exc}")
    except MetadataError as exc:
        return Parsed(path, None, None, error=str(exc))
    try:
        product = from_volume_file(
            data,
            configured_root=configured_root,
            relative_metadata_file=path,
            max_bytes=max_bytes,
        )
    except MetadataError as exc:
        return Parsed(path, info.st_mtime_ns, info.st_size, error=str(exc))
    fields = DataProduct.fields_from(product)
    if copy_text:
        for name in JSON_FIELDS:
            fields[name] = json.dumps(fields[name])
        fields[ARRAY_FIELD] = array_literal(fields[ARRAY_FIELD])
    return Parsed(path, info.st_mtime_ns, info.st_size, fields=fields)


def array_literal(values: list[str]) -> str:
    """A PostgreSQL array of text, as its input syntax: every element quoted,
    its backslashes and double quotes escaped."""
    quoted = (value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


def _read(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    # O_NONBLOCK: a FIFO swapped in after the walk must not hang the worker.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MetadataError("not a regular file")
        if info.st_size > max_bytes:
            raise MetadataError(f"file is {info.st_size} bytes, over the {max_bytes}-byte limit")
        # One byte more than allowed, so a file that grew is still caught.
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    return data, info


# --- the walk, in the same worker processes ------------------------------------------


def scan_chunk(root: str, directories: list[str], metadata_name: str, unit_depth: int) -> Scan:
    """Walk some of the root's folders; the indexer compares what they hold
    with the stored map, which it loads meanwhile."""
    return scan(root, directories, metadata_name, unit_depth, None)
