"""``data-service openapi`` on a broken models file: one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys


def test_openapi_command_refuses_a_broken_models_file(tmp_path):
    broken = tmp_path / "models.yaml"
    broken.write_text("types: {note: {version: '1.0', properties: {title: {type: nope}}}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "data_service", "openapi", f"--models={broken}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == "" and str(broken) in result.stderr
    assert len(result.stderr.splitlines()) == 1
