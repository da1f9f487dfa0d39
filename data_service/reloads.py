"""Secrets re-read while serving: the token file and the keysets (with the KEK file),
on SIGHUP and when they change on disk.

Kubernetes updates a mounted Secret by writing the new files into a fresh directory and
swapping the ``..data`` link, and cannot signal the process; so every ``POLL`` seconds
the files' fingerprints (``secretfiles.fingerprint``: the inode each path resolves to,
its size and mtime) are compared with those taken before the last read, and a group
whose files changed is read again. A new version that cannot be used (unreadable, unsafe
under the secret-file rule, malformed, a cleartext keyset beside a KEK ...) keeps what
was loaded before, and says why once per version (error). A fingerprint is taken before
the files are read, so a change during a read is read again at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from . import secretfiles

log = logging.getLogger("data_service")

POLL = 5.0  # seconds between looks at the files
T = TypeVar("T")


class Watched(Generic[T]):
    """One group of files: ``read`` loads them (in a thread; it raises, saying why, to
    keep the old version), ``apply`` puts what it read in place (on the event loop, in
    one step)."""

    def __init__(
        self,
        name: str,
        paths: Sequence[str | Path],
        read: Callable[[], T],
        apply: Callable[[T], None],
        seen: secretfiles.Fingerprint,
    ) -> None:
        """``seen``: the fingerprint taken before the files were first read."""
        self.name, self.paths, self.read, self.apply, self.seen = name, list(paths), read, apply, seen

    def changed(self) -> bool:
        return secretfiles.fingerprint(self.paths) != self.seen

    async def reload(self) -> bool:
        """Read the files again; False (logged) keeps what was loaded before."""
        self.seen = secretfiles.fingerprint(self.paths)
        try:
            fresh = await asyncio.to_thread(self.read)
        except Exception as exc:  # whatever a bad file raises: the old secrets stay
            log.error("%s not reloaded, keeping the ones loaded before: %s", self.name, exc)
            return False
        self.apply(fresh)
        return True


class Reloader:
    """The watched groups; ``run`` polls them, ``reload_all`` is SIGHUP."""

    def __init__(self, groups: Sequence[Watched], poll: float = POLL) -> None:
        self.groups, self.poll = list(groups), poll
        self._lock = asyncio.Lock()  # one reload at a time: a poll and a SIGHUP never interleave

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            async with self._lock:
                for group in self.groups:
                    if group.changed():
                        await group.reload()

    async def reload_all(self) -> None:
        async with self._lock:
            for group in self.groups:
                await group.reload()
