"""serve's workers share files (metrics, the documents' lock file) through one private
directory: in the temporary directory, else /dev/shm (a read-only root without a /tmp
volume), else a one-line startup error naming what to mount."""

from __future__ import annotations

import stat

import pytest

from data_service.config import ConfigError
from data_service.workers import shared_dir


def test_the_first_writable_parent_holds_a_private_directory(tmp_path):
    made = shared_dir(2, parents=(str(tmp_path / "missing"), str(tmp_path)))
    assert made.parent == tmp_path and stat.S_IMODE(made.stat().st_mode) == 0o700


def test_no_writable_parent_is_a_startup_error_naming_what_to_mount(tmp_path):
    with pytest.raises(ConfigError) as raised:
        shared_dir(3, parents=(str(tmp_path / "missing"), str(tmp_path / "gone")))
    assert str(raised.value) == (
        "--workers=3: no writable directory for the workers' shared files (tried TMPDIR, /tmp and /dev/shm); "
        "mount a writable /tmp (a tmpfs or an emptyDir) or set TMPDIR"
    )
