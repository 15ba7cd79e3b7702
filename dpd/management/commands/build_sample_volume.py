from pathlib import Path

from django.core.management.base import BaseCommand

from dpd.sample_volume import build_sample_volume
from dpd.volume import volume_root


class Command(BaseCommand):
    help = "Write the bundled sample volume (the real-format fixtures and their files)."

    def add_arguments(self, parser):
        parser.add_argument(
            "dest", nargs="?", help="target folder (default: PERSISTENT_STORAGE_PATH)"
        )

    def handle(self, *args, dest=None, **options):
        target = Path(dest) if dest else volume_root()
        written = build_sample_volume(target)
        self.stdout.write(f"sample volume: {written} metadata files in {target}")
