"""The volume indexer: walk, skip unchanged, parse in workers, upsert, remove.

Public entry point: `index_volume()`. Leadership, run records and scheduling
wrap it (indexing/services.py); it knows nothing about them, so the reindex
command, the API and django-q2 tasks all run exactly this code.

The main process walks the volume (indexing/scanner.py) and compares each
metadata file's (mtime_ns, size) with the row stored for it, loaded once per
run; unchanged files are never opened. Changed files go in small chunks to a
process pool (indexing/parsing.py) while the walk goes on, and the parsed
products are upserted in batches as they come back (indexing/writer.py: COPY
on PostgreSQL, which also drops the GIN indexes for a load into an empty table
and builds them when the run ends). Only a complete walk removes anything.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from dpd.models import DataProduct
from dpd.volume import volume_root
from indexing.parsing import Parsed, init_parse_process, parse_chunk, scan_chunk
from indexing.scanner import Scan, StoredMap, scan, scan_root
from indexing.writer import copy_as_text, writer_for_connection

# Files per task sent to a worker: small enough to spread the work evenly and
# to stop soon at a deadline, large enough that pickling stays cheap.
PARSE_CHUNK = 32
# Chunks queued per worker before the walk waits for results (bounds memory).
CHUNKS_IN_FLIGHT_PER_WORKER = 4
# The walk is spread over the pool when the root holds this many folders
# (execution blocks); a smaller volume is walked faster than a pool starts.
PARALLEL_WALK_MIN_FOLDERS = 256
# Folders per walk task: at least this many, and about this many tasks per worker.
WALK_CHUNK_MIN = 16
WALK_CHUNKS_PER_WORKER = 8
# Rows per DELETE when removing vanished products.
REMOVE_CHUNK = 1000


@dataclass
class IndexProgress:
    """Live counters of one run, passed to `on_progress` after every batch.

    `step` uses the SKA DPD API's indexing_step values: "starting",
    "scanning_filesystem", "scanning_and_ingesting (N found, N ingested)",
    "ingesting_remaining (N files)", "completed", "timeout_partial_completion".
    """

    step: str = "starting"
    files_found: int = 0  # metadata files seen by the walk so far
    files_processed: int = 0  # files decided: skipped, parsed (ok or error)
    files_added: int = 0
    files_updated: int = 0
    files_skipped: int = 0  # unchanged since the last run: not read
    files_removed: int = 0
    work_units: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    walk_complete: bool = False


@dataclass
class IndexResult(IndexProgress):
    timed_out: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        """The one-line summary the reindex command ends with."""
        return (
            f"seen={self.files_found} added={self.files_added} updated={self.files_updated} "
            f"skipped={self.files_skipped} removed={self.files_removed} "
            f"errors={len(self.errors)} seconds={self.seconds:.2f}"
        )


class VolumeUnavailable(Exception):
    """The configured volume root does not exist or is not a directory."""


def parallel_workers(*, background: bool = True) -> int:
    """Parse processes of a run: INDEXING_PARALLEL_WORKERS when set, else one
    per core, less one for background runs.

    A background run shares the machine with the API: on 2 cores with 4
    search clients (bench_indexing), a second parse process left the run's
    time unchanged (45-48 s against 47 s; the API took the core anyway) and
    raised the search p99 during it from 75 ms to 97-109 ms. The foreground
    `manage.py reindex` takes every core.
    """
    if settings.INDEXING_PARALLEL_WORKERS:
        return settings.INDEXING_PARALLEL_WORKERS
    cores = _cores()
    return max(1, cores - 1) if background else cores


@functools.cache
def _cores() -> int:
    """os.cpu_count(), read once: it reads a file under /sys each time
    (~28 us), and every /status shows the parse processes twice."""
    return os.cpu_count() or 1


def index_volume(
    configured_root: str | None = None,
    *,
    on_progress: Callable[[IndexProgress], None] | None = None,
    deadline: float | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    work_unit_depth: int | None = None,
    bulk_load: bool = False,
) -> IndexResult:
    """Index the volume at `configured_root` (default PERSISTENT_STORAGE_PATH).

    - `on_progress` is called after every batch is written; an exception it
      raises (e.g. lost leadership) aborts the run and propagates.
    - `deadline` is a time.monotonic() value: past it the run stops with
      timed_out=True, step "timeout_partial_completion", and no removals.
    - `bulk_load`: into an empty catalogue, drop the search indexes for the
      load and build them at the end (faster; searches meanwhile read every
      row). For foreground loads (`manage.py reindex`); see CopyWriter.
    - Raises VolumeUnavailable when the root does not exist or is not a directory.
    """
    configured = settings.PERSISTENT_STORAGE_PATH if configured_root is None else configured_root
    root = volume_root(configured)
    if not root.is_dir():
        raise VolumeUnavailable(f"volume {root} does not exist or is not a directory")
    if workers is None or workers <= 0:
        workers = parallel_workers(background=False)
    run = _Run(
        root=str(root),
        configured_root=configured,
        on_progress=on_progress,
        deadline=deadline,
        workers=workers,
        batch_size=batch_size or settings.INDEXING_BATCH_SIZE,
        unit_depth=work_unit_depth or settings.INDEXING_WORK_UNIT_DEPTH,
        bulk_load=bulk_load,
    )
    return run.execute()


class _Run:
    """One indexing run; its state lives here so the steps stay small."""

    def __init__(
        self,
        *,
        root: str,
        configured_root: str,
        on_progress: Callable[[IndexProgress], None] | None,
        deadline: float | None,
        workers: int,
        batch_size: int,
        unit_depth: int,
        bulk_load: bool,
    ) -> None:
        self.root = root
        self.configured_root = configured_root
        self.on_progress = on_progress
        self.deadline = deadline
        self.workers = workers
        self.batch_size = batch_size
        self.unit_depth = unit_depth
        self.max_bytes = settings.METADATA_MAX_BYTES
        self.metadata_name = settings.METADATA_FILE_NAME
        self.result = IndexResult()
        self.started = time.monotonic()
        # metadata_file -> (mtime_ns, size, source) of every stored row with a file.
        self.stored: StoredMap = {}
        self.seen: set[str] = set()
        self.incomplete: list[str] = []
        self.to_parse: list[str] = []
        self.in_flight: set[Future] = set()  # walks and parses
        self.walks: set[Future] = set()
        self.to_write: list[Parsed] = []
        self.pool: ProcessPoolExecutor | None = None
        self.reported_at = 0
        self.writer = writer_for_connection(bulk_load=bulk_load)
        self.copy_text = copy_as_text()

    # --- the steps ----------------------------------------------------------

    def execute(self) -> IndexResult:
        self.writer.begin()
        try:
            self.result.step = "scanning_filesystem"
            if self.walk() and self.parse_remaining():
                self.write_buffered()
                self.remove_vanished()
                self.result.step = "completed"
            else:
                self.write_buffered()
                self.result.timed_out = True
                self.result.step = "timeout_partial_completion"
        finally:
            try:
                if self.pool is not None:
                    self.pool.shutdown(wait=True, cancel_futures=True)
            finally:
                self.writer.finish()
        self.result.errors.sort()
        self.result.seconds = time.monotonic() - self.started
        self.report()
        return self.result

    def load_stored(self) -> None:
        rows = DataProduct.objects.filter(metadata_file__isnull=False).values_list(
            "metadata_file", "file_mtime_ns", "file_size", "source"
        )
        self.stored = {path: (mtime, size, source) for path, mtime, size, source in rows}

    def walk(self) -> bool:
        """Walk the volume, queueing changed files; False when the deadline stopped it.

        The root is scanned here; its folders go in chunks to the pool on a
        large volume (the walk is then parallel too, and the stored map loads
        while the workers walk), else they are scanned in this process one
        chunk at a time.
        """
        root_scan, folders = scan_root(self.root, self.metadata_name, None)
        use_pool = self.workers > 1 and len(folders) >= PARALLEL_WALK_MIN_FOLDERS
        size = max(WALK_CHUNK_MIN, -(-len(folders) // (self.workers * WALK_CHUNKS_PER_WORKER)))
        chunks = [folders[start : start + size] for start in range(0, len(folders), size)]
        if use_pool:
            for chunk in chunks:
                future = self.start_pool().submit(
                    scan_chunk, self.root, chunk, self.metadata_name, self.unit_depth
                )
                self.walks.add(future)
                self.in_flight.add(future)
            chunks = []
        self.load_stored()
        self.merge(root_scan)
        for chunk in chunks:
            self.merge(scan(self.root, chunk, self.metadata_name, self.unit_depth, self.stored))
            self.submit_parsing()
            self.collect(block=False)
            if self.past_deadline():
                return False
        while self.walks:
            if self.past_deadline():
                return False
            self.collect(block=True)
            self.submit_parsing()
        self.result.walk_complete = True
        return True

    def merge(self, found: Scan) -> None:
        """Count a scan's files and queue its changed ones for parsing."""
        result = self.result
        result.work_units += found.units
        self.incomplete.extend(found.incomplete)
        for path, reason in found.errors:
            self.record_error(path, reason)
            if path.rsplit("/", 1)[-1] == self.metadata_name:
                result.files_found += 1
                result.files_processed += 1
        self.seen.update(found.found)
        self.to_parse.extend(found.changed)
        skipped = found.skipped
        stored = self.stored
        for path, mtime_ns, size in found.stats:  # a walk that left us the comparison
            row = stored.get(path)
            if row and row[0] == mtime_ns and row[1] == size:
                skipped += 1
            else:
                self.to_parse.append(path)
        result.files_found += len(found.found)
        result.files_skipped += skipped
        result.files_processed += skipped
        if result.files_processed - self.reported_at >= self.batch_size:
            self.report()

    def parse_remaining(self) -> bool:
        """Parse what the walk left queued; False when the deadline stopped it."""
        self.result.step = f"ingesting_remaining ({self.files_pending()} files)"
        self.submit_parsing(final=True)
        while self.in_flight:
            self.result.step = f"ingesting_remaining ({self.files_pending()} files)"
            if self.past_deadline():
                return False
            self.collect(block=True)
        return not self.past_deadline()

    def write_buffered(self) -> None:
        if self.to_write:
            self.write(self.to_write)
            self.to_write = []

    def remove_vanished(self) -> None:
        """Delete volume products whose file the complete walk did not find."""
        if "" in self.incomplete:  # the root itself could not be listed
            return
        prefixes = tuple(f"{path}/" for path in self.incomplete)
        volume = DataProduct.Source.VOLUME
        vanished = [
            path
            for path in self.stored.keys() - self.seen
            if self.stored[path][2] == volume and not (prefixes and path.startswith(prefixes))
        ]
        vanished.sort()
        for start in range(0, len(vanished), REMOVE_CHUNK):
            chunk = vanished[start : start + REMOVE_CHUNK]
            deleted, _ = DataProduct.objects.filter(
                metadata_file__in=chunk, source=DataProduct.Source.VOLUME
            ).delete()
            self.result.files_removed += deleted

    # --- parsing in the pool ------------------------------------------------------

    def start_pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            # fork: workers start at once, inherit the loaded code, and never
            # use the inherited database connection (parsing.py).
            self.pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=init_parse_process,
            )
        return self.pool

    def submit_parsing(self, final: bool = False) -> None:
        """Send full chunks of changed files (all of them when final) to be parsed."""
        if self.workers <= 1 or (self.pool is None and final and len(self.to_parse) < PARSE_CHUNK):
            # One worker, or too few files to be worth starting processes.
            if final or len(self.to_parse) >= PARSE_CHUNK:
                paths, self.to_parse = self.to_parse, []
                # Chunk by chunk, so batches are written (and a stop request
                # heeded) as they fill, not after a whole walk chunk is parsed.
                for start in range(0, len(paths), PARSE_CHUNK):
                    chunk = paths[start : start + PARSE_CHUNK]
                    self.handle(
                        parse_chunk(
                            self.root, self.configured_root, chunk, self.max_bytes, self.copy_text
                        )
                    )
            return
        limit = len(self.walks) + self.workers * CHUNKS_IN_FLIGHT_PER_WORKER
        while len(self.to_parse) >= PARSE_CHUNK or (final and self.to_parse):
            chunk, self.to_parse = self.to_parse[:PARSE_CHUNK], self.to_parse[PARSE_CHUNK:]
            self.in_flight.add(
                self.start_pool().submit(
                    parse_chunk,
                    self.root,
                    self.configured_root,
                    chunk,
                    self.max_bytes,
                    self.copy_text,
                )
            )
            while len(self.in_flight) >= limit:
                self.collect(block=True)
                limit = len(self.walks) + self.workers * CHUNKS_IN_FLIGHT_PER_WORKER

    def collect(self, *, block: bool) -> None:
        """Take in finished work: walked chunks and parsed files."""
        if not self.in_flight:
            return
        timeout = None
        if not block:
            timeout = 0
        elif self.deadline is not None:
            timeout = max(0.0, self.deadline - time.monotonic())
        done, self.in_flight = wait(self.in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            if future in self.walks:
                self.walks.discard(future)
                self.merge(future.result())
            else:
                self.handle(future.result())

    def handle(self, parsed: list[Parsed]) -> None:
        for item in parsed:
            if item.fields is None:
                self.record_error(item.path, item.error or "unknown error")
                self.result.files_processed += 1
            else:
                self.to_write.append(item)
        while len(self.to_write) >= self.batch_size:
            batch, self.to_write = (
                self.to_write[: self.batch_size],
                self.to_write[self.batch_size :],
            )
            self.write(batch)

    # --- writing ----------------------------------------------------------------

    def write(self, batch: list[Parsed]) -> None:
        """Upsert one batch by metadata_file, then report progress."""
        with transaction.atomic():
            batch = self.release_moved_uids(batch)
            if batch:
                self.writer.write(batch)
        for item in batch:
            if item.path in self.stored:
                self.result.files_updated += 1
            else:
                self.result.files_added += 1
            self.result.files_processed += 1
        self.report()

    def release_moved_uids(self, batch: list[Parsed]) -> list[Parsed]:
        """Make room for uids that now belong to another file.

        The upsert matches rows by metadata_file, but uid is unique too: when a
        uid moves to a new file (e.g. the configured root changed and with it
        every relative path), the row still holding it is the same product
        under its old path, so it is deleted in the same transaction and the
        new file's row carries the uid on. A uid held by an ingested product
        is never taken over; the file is reported instead.
        """
        by_uid: dict = {}
        rejected: set[str] = set()
        for item in batch:
            uid = item.fields["uid"]
            other = by_uid.setdefault(uid, item)
            if other is not item:  # two folders hashing alike: keep the first
                rejected.add(item.path)
                self.record_error(item.path, f"uid {uid} is also {other.path}'s")
                self.result.files_processed += 1
        holders = DataProduct.objects.filter(uid__in=list(by_uid)).values_list(
            "uid", "metadata_file", "source"
        )
        moved: list = []
        for uid, metadata_file, source in holders:
            item = by_uid[uid]
            if metadata_file == item.path:
                continue
            if source != DataProduct.Source.VOLUME:
                rejected.add(item.path)
                self.record_error(item.path, f"uid {uid} belongs to an ingested product")
                self.result.files_processed += 1
            else:
                moved.append(uid)
                # The product lives on under its new path: counted as updated.
                self.stored[item.path] = self.stored.pop(metadata_file, (None, None, ""))
        if moved:
            DataProduct.objects.filter(uid__in=moved).delete()
        return [item for item in batch if item.path not in rejected]

    # --- bookkeeping --------------------------------------------------------------

    def record_error(self, path: str, reason: str) -> None:
        # A path that exists but cannot be indexed keeps its last good version.
        self.seen.add(path)
        self.result.errors.append((path, reason))

    def files_pending(self) -> int:
        return self.result.files_found - self.result.files_processed

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def report(self) -> None:
        result = self.result
        ingested = result.files_added + result.files_updated
        if not result.walk_complete and ingested and result.step.startswith("scanning"):
            result.step = (
                f"scanning_and_ingesting ({result.files_found} found, {ingested} ingested)"
            )
        self.reported_at = result.files_processed
        if self.on_progress is not None:
            self.on_progress(result)
