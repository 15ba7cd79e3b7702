"""Where the configured volume is on disk."""

from pathlib import Path

from django.conf import settings


def volume_root(configured: str | None = None) -> Path:
    """The volume directory for file access. A relative setting is taken from
    the project directory; the string itself is still what uids hash."""
    path = Path(configured if configured is not None else settings.PERSISTENT_STORAGE_PATH)
    return path if path.is_absolute() else settings.BASE_DIR / path
