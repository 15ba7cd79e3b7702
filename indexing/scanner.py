"""Walk a volume in work units and find its metadata files, without reading them.

The walk uses `os.scandir` and one `stat` per metadata file: that is all a
re-index of an unchanged volume costs. Symlinked directories are never
descended (as upstream); one that points at an ancestor is reported as a
directory loop, and a directory reached twice by any other route (bind mounts)
is reported and not walked again. A symlinked metadata file is followed only
when its target lies inside the volume.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FoundFile:
    """A metadata file the walk found: path relative to the root, and the
    (mtime_ns, size) that decide whether it changed."""

    path: str
    mtime_ns: int
    size: int


@dataclass
class WorkUnit:
    """What one work unit of the walk found.

    `incomplete` lists folders (relative) that could not be listed: products
    under them may still exist, so nothing under them may be removed.
    """

    path: str
    files: list[FoundFile] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


def walk_volume(root: str, metadata_name: str, unit_depth: int) -> Iterator[WorkUnit]:
    """Yield the volume's work units, depth first, in a stable order.

    A directory `unit_depth` levels below the root is one unit with its whole
    subtree; each shallower directory is a unit of its own files. Units bound
    the work between two progress reports and two timeout checks.
    """
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    walker = _Walker(root, real_root, metadata_name)
    # Shallow directories, handled one level at a time; deep ones become units.
    pending: list[tuple[str, int]] = [("", 0)]
    while pending:
        relative, depth = pending.pop()
        unit = WorkUnit(path=relative or ".")
        if depth >= unit_depth:
            walker.walk_subtree(relative, unit)
        else:
            children = walker.scan_directory(relative, unit)
            pending.extend((child, depth + 1) for child in reversed(children))
        yield unit


class _Walker:
    def __init__(self, root: str, real_root: str, metadata_name: str) -> None:
        self.root = root
        self.real_root = real_root
        self.metadata_name = metadata_name
        self.seen_directories: set[tuple[int, int]] = set()

    def walk_subtree(self, relative: str, unit: WorkUnit) -> None:
        stack = [relative]
        while stack:
            children = self.scan_directory(stack.pop(), unit)
            stack.extend(reversed(children))

    def scan_directory(self, relative: str, unit: WorkUnit) -> list[str]:
        """Record the metadata file of one directory; return its subdirectories."""
        absolute = os.path.join(self.root, relative) if relative else self.root
        try:
            with os.scandir(absolute) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
            identity = os.stat(absolute, follow_symlinks=False)
        except OSError as exc:
            unit.errors.append((relative or ".", f"cannot list folder: {exc.strerror}"))
            unit.incomplete.append(relative)
            return []
        key = (identity.st_dev, identity.st_ino)
        if key in self.seen_directories:
            unit.errors.append((relative, "directory loop: this folder was already walked"))
            return []
        self.seen_directories.add(key)

        subdirectories = []
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            try:
                is_symlink = entry.is_symlink()
                is_directory = entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                unit.errors.append((path, f"cannot inspect: {exc.strerror}"))
                continue
            if is_directory:
                subdirectories.append(path)
                if entry.name == self.metadata_name:
                    unit.errors.append((path, "is a folder, not a metadata file"))
            elif is_symlink and entry.name != self.metadata_name:
                self._check_symlinked_folder(entry, path, unit)
            elif entry.name == self.metadata_name:
                self._record_metadata_file(entry, path, is_symlink, unit)
        return subdirectories

    def _check_symlinked_folder(self, entry: os.DirEntry, path: str, unit: WorkUnit) -> None:
        # Symlinked folders are never descended; one pointing at an ancestor
        # would loop forever in a walker that did, so say so.
        target = os.path.realpath(entry.path)
        parent = os.path.realpath(os.path.dirname(entry.path))
        if os.path.isdir(target) and _is_within(target, parent):
            unit.errors.append(
                (path, "directory loop: symlink to an ancestor folder, not followed")
            )

    def _record_metadata_file(
        self, entry: os.DirEntry, path: str, is_symlink: bool, unit: WorkUnit
    ) -> None:
        if is_symlink:
            target = os.path.realpath(entry.path)
            if not _is_within(self.real_root, target):
                unit.errors.append((path, "symlink points outside the volume"))
                return
        try:
            info = entry.stat()  # follows an in-volume symlink to its target
        except FileNotFoundError:
            unit.errors.append((path, "broken symlink" if is_symlink else "vanished"))
            return
        except OSError as exc:
            unit.errors.append((path, f"cannot stat: {exc.strerror}"))
            return
        if not stat.S_ISREG(info.st_mode):
            unit.errors.append((path, f"not a regular file ({_kind(info.st_mode)})"))
            return
        unit.files.append(FoundFile(path, info.st_mtime_ns, info.st_size))


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
