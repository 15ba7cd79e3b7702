"""Walk a volume in work units and find its changed metadata files, reading none.

The walk uses `os.scandir` and one `stat` per metadata file and per folder
(to detect loops): that is all a re-index of an unchanged volume costs. The
indexer scans the root itself and hands the folders below it, in chunks, to
`scan()` (in worker processes on a large volume). Every folder less than
`unit_depth` levels deep is one work unit of its own files; a folder at that
depth is one unit with its whole subtree.

Symlinked folders are never descended (as upstream); one that points at an
ancestor is reported as a directory loop, and a folder reached twice by any
other route (bind mounts) is reported and not walked again. A symlinked
metadata file is followed only when its target lies inside the volume.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

# (mtime_ns, size, source) of the stored row, by metadata_file.
StoredMap = dict[str, tuple]


@dataclass
class Scan:
    """What a scan found: metadata files by relative path, split into
    unchanged (only counted) and changed (to parse). A scan without a stored
    map leaves the comparison to its caller: every file goes to `stats`.

    `incomplete` lists folders (relative) that could not be listed: products
    under them may still exist, so nothing under them may be removed.
    """

    units: int = 0
    skipped: int = 0
    found: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    stats: list[tuple[str, int, int]] = field(default_factory=list)  # (path, mtime_ns, size)
    errors: list[tuple[str, str]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


def scan_root(root: str, metadata_name: str, stored: StoredMap | None) -> tuple[Scan, list[str]]:
    """Scan the root's own files (one unit); return them and its folders."""
    walker = _Walker(root, metadata_name, stored)
    walker.result.units = 1
    return walker.result, walker.scan_directory(walker.root)


def scan(
    root: str,
    directories: list[str],
    metadata_name: str,
    unit_depth: int,
    stored: StoredMap | None,
    depth: int = 1,
) -> Scan:
    """Walk `directories` (absolute, each `depth` levels below root) and
    everything under them."""
    walker = _Walker(root, metadata_name, stored)
    pending = [(directory, depth) for directory in reversed(directories)]
    while pending:
        directory, level = pending.pop()
        walker.result.units += 1
        if level >= unit_depth:
            walker.walk_subtree(directory)
        else:
            children = walker.scan_directory(directory)
            pending.extend((child, level + 1) for child in reversed(children))
    return walker.result


class _Walker:
    """Paths stay absolute until a metadata file or an error is recorded."""

    def __init__(self, root: str, metadata_name: str, stored: StoredMap | None) -> None:
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(self.root)
        self.prefix = len(self.root.rstrip(os.sep)) + 1
        self.metadata_name = metadata_name
        self.stored = stored
        self.seen_directories: set[tuple[int, int]] = set()
        self.result = Scan()

    def relative(self, path: str) -> str:
        return path[self.prefix :]

    def walk_subtree(self, directory: str) -> None:
        stack = [directory]
        while stack:
            stack.extend(self.scan_directory(stack.pop()))

    def scan_directory(self, directory: str) -> list[str]:
        """Record the metadata file of one folder; return its subfolders.

        This loop is the whole cost of an unchanged re-index, hence the plain
        code: DirEntry's type checks are free (d_type), and only metadata
        files and folders (for loop detection) are stat'ed.
        """
        result = self.result
        try:
            identity = os.stat(directory, follow_symlinks=False)
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError as exc:
            relative = self.relative(directory)
            result.errors.append((relative or ".", f"cannot list folder: {exc.strerror}"))
            result.incomplete.append(relative)
            return []
        key = (identity.st_dev, identity.st_ino)
        if key in self.seen_directories:
            result.errors.append(
                (self.relative(directory), "directory loop: this folder was already walked")
            )
            return []
        self.seen_directories.add(key)

        subdirectories = []
        name = self.metadata_name
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(entry.path)
                    if entry.name == name:
                        result.errors.append(
                            (self.relative(entry.path), "is a folder, not a metadata file")
                        )
                elif entry.name == name:
                    self.record_metadata_file(entry)
                elif entry.is_symlink():
                    self.check_symlinked_folder(entry)
            except OSError as exc:
                result.errors.append((self.relative(entry.path), f"cannot inspect: {exc.strerror}"))
        return subdirectories

    def record_metadata_file(self, entry: os.DirEntry) -> None:
        result = self.result
        path = self.relative(entry.path)
        is_symlink = entry.is_symlink()
        if is_symlink and not _is_within(self.real_root, os.path.realpath(entry.path)):
            result.errors.append((path, "symlink points outside the volume"))
            return
        try:
            info = entry.stat()  # follows an in-volume symlink to its target
        except FileNotFoundError:
            result.errors.append((path, "broken symlink" if is_symlink else "vanished"))
            return
        except OSError as exc:
            result.errors.append((path, f"cannot stat: {exc.strerror}"))
            return
        if not stat.S_ISREG(info.st_mode):
            result.errors.append((path, f"not a regular file ({_kind(info.st_mode)})"))
            return
        result.found.append(path)
        if self.stored is None:
            result.stats.append((path, info.st_mtime_ns, info.st_size))
            return
        stored = self.stored.get(path)
        if stored and stored[0] == info.st_mtime_ns and stored[1] == info.st_size:
            result.skipped += 1
        else:
            result.changed.append(path)

    def check_symlinked_folder(self, entry: os.DirEntry) -> None:
        # Symlinked folders are never descended; one pointing at an ancestor
        # would loop forever in a walker that did, so say so.
        target = os.path.realpath(entry.path)
        parent = os.path.realpath(os.path.dirname(entry.path))
        if os.path.isdir(target) and _is_within(target, parent):
            self.result.errors.append(
                (
                    self.relative(entry.path),
                    "directory loop: symlink to an ancestor folder, not followed",
                )
            )


def _is_within(ancestor: str, path: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip(os.sep) + os.sep)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"
