import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from indexing.indexer import IndexProgress, VolumeUnavailable, index_volume


class Command(BaseCommand):
    help = (
        "Index the volume now (PERSISTENT_STORAGE_PATH, or --path) and print one summary "
        "line: seen / added / updated / skipped / removed / errors / seconds."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--path", help="volume root to index instead of PERSISTENT_STORAGE_PATH"
        )

    def handle(self, *args, path=None, **options):
        progress = _Progress(self.stdout)
        deadline = time.monotonic() + settings.INDEXING_TIMEOUT_SECONDS
        try:
            result = index_volume(path, on_progress=progress, deadline=deadline)
        except VolumeUnavailable as exc:
            raise CommandError(str(exc)) from None
        finally:
            progress.close()
        for error_path, reason in result.errors:
            self.stdout.write(f"error: {error_path}: {reason}")
        if result.timed_out:
            self.stdout.write(f"timed out after {settings.INDEXING_TIMEOUT_SECONDS}s: no removals")
        self.stdout.write(result.summary())


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
