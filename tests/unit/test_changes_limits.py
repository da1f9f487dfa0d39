"""The change feed's ``--max-streams`` flag: a positive number or a one-line startup refusal."""

from __future__ import annotations

import subprocess
import sys


def test_max_streams_is_a_positive_number(keys_dir):
    for bad in ("--max-streams=0", "--max-streams=many"):
        command = [sys.executable, "-m", "data_service", "serve", f"--keys-dir={keys_dir}", bad]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and result.stderr.startswith("data-service: --max-streams: "), result.stderr
