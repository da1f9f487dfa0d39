"""``data-service --version``: the build, with the models file's digest and the key ids."""

from __future__ import annotations

from ..buildinfo import BuildInfo
from ..keys import KeysDir, kek_from
from ..models import load_models
from ..protection import Keyring


def version_command(args: dict) -> int:
    keyring = None
    if args["--models"]:
        load_models(args["--models"])  # a broken models file says so here too
    if args["--keys-dir"]:
        keyring = Keyring(KeysDir(args["--keys-dir"], kek_from(args["--kek-file"])), deployment="")  # key ids only
    print("\n".join(BuildInfo.of(args["--models"], keyring).lines()))
    return 0
