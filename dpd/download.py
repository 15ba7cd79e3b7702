"""Downloads: which folders a tar holds, decided before its first byte.

Everything that can fail cleanly (unknown product, no files, a folder gone
from the volume, a folder outside it) is decided in `plan_download`, before
the response starts; once bytes flow, a failure can only cut the stream
(reference 2.9, 6). dpd.tar_layout walks the plan's folders once (the exact
length, the ETag, every member's offset) and dpd.tar_stream sends the bytes
of any range of it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dpd.models import DataProduct
from dpd.volume import volume_root

logger = logging.getLogger(__name__)


class DownloadNotFound(LookupError):
    """Nothing to send; the message is the 404 `detail` (reference 2.9)."""


class DownloadInterrupted(OSError):
    """A file changed or vanished after the stream started; the tar is cut."""


@dataclass(frozen=True)
class DownloadPlan:
    """What one download sends: folders relative to the volume root, none
    inside another, each checked to be a directory inside the volume."""

    filename: str
    root: Path
    folders: tuple[str, ...]


def plan_download(products: Iterable[DataProduct], *, filename: str, asked: str) -> DownloadPlan:
    """Check every product folder before the first byte; `asked` names the
    request in error messages ("uid …" or "execution_block …")."""
    products = list(products)
    if not products:
        raise DownloadNotFound(f"File not found: no data product with {asked}")
    folders = sorted({p.dataproduct_file for p in products if p.has_files})
    if not folders:
        raise DownloadNotFound(
            f"File not found: the data product with {asked} has no files on the volume"
        )
    root = volume_root()
    real_root = os.path.realpath(root)
    for folder in folders:
        relative = PurePosixPath(folder)
        real = os.path.realpath(root / relative)
        inside = relative.parts and ".." not in relative.parts and not relative.is_absolute()
        if not inside or os.path.commonpath([real_root, real]) != real_root:
            logger.error("download refused: product folder %r is outside the volume", folder)
            raise DownloadNotFound(f"File not found: {folder} is not inside the volume")
        if not os.path.isdir(real):
            raise DownloadNotFound(f"File not found: {folder} is no longer on the volume")
    return DownloadPlan(filename=filename, root=root, folders=_outermost(folders))


def _outermost(folders: list[str]) -> tuple[str, ...]:
    """Drop folders inside another selected folder, so each file goes once."""
    kept: list[PurePosixPath] = []
    for folder in sorted(PurePosixPath(f) for f in folders):
        if not any(folder.is_relative_to(parent) for parent in kept):
            kept.append(folder)
    return tuple(str(folder) for folder in kept)
