"""The one rule for every file holding a secret: keysets (and the keys directory), the
key-encryption key, the API token file and the CouchDB password file.

A secret file is read only when nobody but root and this process's own user can change
what it says:

1. **The whole path is safe.** Every directory from ``/`` down to the file, every
   symbolic link passed through (Kubernetes reaches a Secret's files through ``..data``
   links) and the file itself belong to root or to this process's effective user, and
   none of the directories or the file is writable by group or others. A directory with
   the sticky bit (``/tmp``, a Secret volume's root) is the one exception: there only the
   owner of an entry may rename or remove it, and every entry passed through is checked
   for its owner anyway. A symbolic link's own mode means nothing (it cannot be edited,
   only replaced, which needs write access to its directory): only its owner is checked.
2. **The file is a regular file.**
3. **A file of this process's own user is private**: no access at all for group or
   others (0600 or 0400). Root-owned files (when the process is not root) may be
   readable by group or others: that is how a Secret volume lets a non-root process
   read them (``defaultMode: 0440`` with ``fsGroup``, or ``0444``).

``read`` opens the file, then checks the path and that the file checked is the one
opened (same device and inode), so a swap between the two is refused, not read.
``fingerprint`` tells a reloader whether any of its files changed (a Kubernetes Secret
update swaps the ``..data`` link: every file then resolves to a new inode).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

MAX_LINKS = 40  # symbolic links followed in one path (the kernel's own limit)
GROUP_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH
GROUP_OTHER_ANY = stat.S_IRWXG | stat.S_IRWXO


class UnsafeSecret(ValueError):
    """A secret file (or its path) someone else could change, or that cannot be read;
    the message names the path and what to change. Callers prefix the flag."""


def check(path: str | os.PathLike, *, directory: bool = False, euid: int | None = None) -> os.stat_result:
    """The stat of the file (or with ``directory``, the directory) ``path`` names once
    rule 1-3 (module docstring) hold; UnsafeSecret otherwise."""
    euid = os.geteuid() if euid is None else euid
    final = _walk(Path(path), euid)
    target, info = final
    if directory:
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeSecret(f"{path}: not a directory")
        return info
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeSecret(f"{path}: not a regular file")
    if info.st_uid == euid and info.st_mode & GROUP_OTHER_ANY:
        raise UnsafeSecret(
            f"{path}: group or others may access it (mode {stat.S_IMODE(info.st_mode):04o}); a secret file owned "
            f"by this process's user must be 0600 or 0400: chmod go= {target}"
        )
    return info


def read(path: str | os.PathLike, *, euid: int | None = None) -> bytes:
    """The bytes of the secret file ``path``, once ``check`` accepts it. UnsafeSecret
    also for a file that cannot be read (the message says why, never what it holds)."""
    try:
        with open(path, "rb") as file:
            opened = os.fstat(file.fileno())
            checked = check(path, euid=euid)
            if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
                raise UnsafeSecret(f"{path}: replaced while it was being read; try again")
            return file.read()
    except OSError as exc:
        raise UnsafeSecret(f"{path}: cannot read ({exc.strerror})") from None


def read_text(path: str | os.PathLike, *, euid: int | None = None) -> str:
    try:
        return read(path, euid=euid).decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeSecret(f"{path}: not UTF-8 text") from None


Fingerprint = tuple[tuple[int, int, int, int] | None, ...]


def fingerprint(paths: Iterable[str | os.PathLike]) -> Fingerprint:
    """What changes when any of ``paths`` changes: device, inode, size and mtime of the
    file each resolves to (None for one that cannot be reached)."""
    marks: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            marks.append(None)
            continue
        marks.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(marks)


def _walk(path: Path, euid: int) -> tuple[Path, os.stat_result]:
    """Resolve ``path`` one entry at a time from ``/``, checking each entry passed
    (rule 1); the entry it ends on and its stat."""
    current = Path("/")
    current_info = _lstat(current)
    _check_entry(current, current_info, euid)
    todo = list(Path(os.path.abspath(path)).parts[1:])
    links = 0
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            current_info = _lstat(current)
            continue
        if not stat.S_ISDIR(current_info.st_mode):
            raise UnsafeSecret(f"{path}: {current} is not a directory")
        entry = current / name
        info = _lstat(entry)
        _check_entry(entry, info, euid)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise UnsafeSecret(f"{path}: too many symbolic links")
            target = os.readlink(entry)
            if os.path.isabs(target):
                current, current_info = Path("/"), _lstat(Path("/"))
            todo[:0] = Path(target).parts[1:] if os.path.isabs(target) else Path(target).parts
            continue
        current, current_info = entry, info
    return current, current_info


def _lstat(entry: Path) -> os.stat_result:
    try:
        return os.lstat(entry)
    except OSError as exc:
        raise UnsafeSecret(f"{entry}: cannot read ({exc.strerror})") from None


def _check_entry(entry: Path, info: os.stat_result, euid: int) -> None:
    if info.st_uid not in (0, euid):
        raise UnsafeSecret(
            f"{entry}: owned by uid {info.st_uid}, neither root nor this process's user (uid {euid}); refusing it"
        )
    if stat.S_ISLNK(info.st_mode):
        return
    if info.st_mode & GROUP_OTHER_WRITE and not (stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX):
        raise UnsafeSecret(
            f"{entry}: writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"refusing it: chmod go-w {entry}"
        )
