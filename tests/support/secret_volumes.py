"""Secret volumes laid out as the kubelet lays them out (building one needs root), and the
image's user."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from data_service.keys import KeysDir

APP_UID = 10001  # the image's user


FS_GROUP = 2000  # a pod's securityContext.fsGroup


TOKEN = "token-from-a-secret-0123456789"


def secret_volume(root: Path, files: dict[str, bytes], mode: int = 0o440, group: int = FS_GROUP) -> Path:
    """A Secret volume as the kubelet writes it: a sticky, world-writable, root-owned
    mount point; the files in a timestamped directory (0755, root); ``..data`` a link to
    it; each name a link through ``..data``; files root-owned, group ``fsGroup``, mode
    ``defaultMode``."""
    root.mkdir(mode=0o755)
    os.chmod(root, 0o1777)
    update(root, "..2026_01_01_00_00_00.000000001", files, mode, group)
    for name in files:
        os.symlink(f"..data/{name}", root / name)
    return root


def update(root: Path, version: str, files: dict[str, bytes], mode: int = 0o440, group: int = FS_GROUP) -> None:
    """The kubelet's atomic update: a new timestamped directory, then ``..data`` swapped."""
    directory = root / version
    directory.mkdir(mode=0o755)
    for name, data in files.items():
        (directory / name).write_bytes(data)
        os.chown(directory / name, 0, group)
        os.chmod(directory / name, mode)
    os.symlink(version, root / "..data_tmp")
    os.rename(root / "..data_tmp", root / "..data")


AS_APP = ("setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", f"--groups={FS_GROUP}")  # fsGroup: supplementary


def keyset_files(keys: KeysDir) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in keys.files()}


@contextlib.contextmanager
def traversable_directory():
    """A directory any user may traverse (tmp_path's parents are private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="secret-layout-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
