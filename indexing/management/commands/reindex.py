from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from dpd.volume import volume_root
from indexing.indexer import IndexProgress
from indexing.models import IndexRun
from indexing.services import index_run


class Command(BaseCommand):
    help = (
        "Index the volume now (PERSISTENT_STORAGE_PATH, or --path) under the same leadership "
        "rules as the service: if another instance holds the volume's indexing slot, nothing "
        "is scanned and the command fails naming it. --force takes the slot anyway (recovery "
        "when the holder is known to be dead; a live holder stops at its next batch). SIGTERM "
        "or Ctrl-C stops the run at its next batch boundary (recorded as interrupted). Ends "
        "with one summary line: seen / added / updated / skipped / removed / errors / seconds."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--path", help="volume root to index instead of PERSISTENT_STORAGE_PATH"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="take the indexing slot even if another instance seems to hold it",
        )

    def handle(self, *args, path=None, force=False, **options):
        # Checked before the database: a mistyped --path is the commonest mistake
        # and its message must not depend on the database being reachable.
        root = volume_root(path)
        if not root.is_dir():
            raise CommandError(f"volume {root} does not exist or is not a directory")
        progress = _Progress(self.stdout)
        try:
            run = index_run(
                IndexRun.Trigger.COMMAND, force=force, on_progress=progress, configured_root=path
            )
        finally:
            progress.close()
        if run is None:
            raise CommandError("the run could not be recorded: is the database available?")
        if run.status == IndexRun.Status.SKIPPED:
            raise CommandError(f"{run.failure_message} Nothing was scanned (--force takes over).")
        for error in run.errors:
            self.stdout.write(f"error: {error['path']}: {error['reason']}")
        if run.status in (IndexRun.Status.ERROR, IndexRun.Status.INTERRUPTED):
            raise CommandError(run.failure_message)
        if run.timed_out:
            self.stdout.write(f"timed out after {settings.INDEXING_TIMEOUT_SECONDS}s: no removals")
        seconds = run.duration.total_seconds() if run.duration else 0.0
        self.stdout.write(
            f"seen={run.files_found} added={run.files_added} updated={run.files_updated} "
            f"skipped={run.files_skipped} removed={run.files_removed} "
            f"errors={len(run.errors)} seconds={seconds:.2f}"
        )


class _Progress:
    """A tqdm bar on a terminal; plain lines (one per batch) for logs and pipes."""

    def __init__(self, stdout) -> None:
        self.stdout = stdout
        self.bar = tqdm(unit=" files", file=stdout, dynamic_ncols=True) if stdout.isatty() else None

    def __call__(self, progress: IndexProgress) -> None:
        if self.bar is not None:
            self.bar.total = max(progress.files_found, progress.files_processed)
            self.bar.n = progress.files_processed
            self.bar.set_description(progress.step.split(" (")[0], refresh=False)
            self.bar.refresh()
        else:
            self.stdout.write(
                f"progress: {progress.step} found={progress.files_found} "
                f"processed={progress.files_processed}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
