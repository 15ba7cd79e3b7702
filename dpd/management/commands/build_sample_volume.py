from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dpd.sample_volume import build_sample_volume
from dpd.volume import volume_root


class Command(BaseCommand):
    help = "Write the bundled sample volume (the real-format fixtures and their files)."

    def add_arguments(self, parser):
        parser.add_argument(
            "dest", nargs="?", help="target folder (default: PERSISTENT_STORAGE_PATH)"
        )
        parser.add_argument(
            "--synthetic",
            type=int,
            default=0,
            metavar="N",
            help="also write N generated execution blocks under synthetic/ (demo)",
        )

    def handle(self, *args, dest=None, synthetic=0, **options):
        if synthetic < 0:
            raise CommandError("--synthetic must be 0 or more")
        target = Path(dest) if dest else volume_root()
        written = build_sample_volume(target, synthetic_blocks=synthetic)
        self.stdout.write(f"sample volume: {written} metadata files in {target}")
