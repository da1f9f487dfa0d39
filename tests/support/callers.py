"""API tokens of a sidecar's callers (``--api-tokens-file``)."""

from __future__ import annotations

ONE = "token-one-0123456789abcdef"


TWO = "token-two-fedcba9876543210"


def token_file(tmp_path, *tokens: str):
    path = tmp_path / "tokens"
    path.write_text("# callers of this sidecar\n\n" + "\n".join(tokens) + "\n")
    path.chmod(0o600)  # a secret file of the process's own user: owner-only
    return path
