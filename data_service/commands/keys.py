"""``data-service keys``: the Tink keysets (create, rotate, promote, disable, enable, list)
and ``keys new-kek``."""

from __future__ import annotations

import os

from ..config import ConfigError
from ..keys import PURPOSES, KeysDir, kek_from, new_kek


def keys_command(args: dict) -> int:
    if args["new-kek"]:
        fd = _create_private(args["--out"])
        with os.fdopen(fd, "w") as out:
            out.write(new_kek())
        print(f"wrote {args['--out']}")
        return 0
    keys = KeysDir(args["--keys-dir"], kek_from(args["--kek-file"]))
    purpose = args["--purpose"]
    if purpose is not None and purpose not in PURPOSES:
        raise ConfigError(f"--purpose: one of {', '.join(PURPOSES)}")
    if args["create"]:
        for path in keys.create():
            print(f"wrote {path}")
    elif args["rotate"]:
        key_id = keys.rotate(purpose)
        print(f"{purpose}: new key {key_id}, enabled, not primary; once every sidecar has loaded it, run")
        print(f"  data-service keys promote --keys-dir={args['--keys-dir']} --purpose={purpose} --key-id={key_id}")
    elif args["promote"]:
        key_id = _key_id(args)
        keys.promote(purpose, key_id)
        print(f"{purpose}: key {key_id} is primary (restart the sidecars to write with it)")
    elif args["disable"] or args["enable"]:
        status = "DISABLED" if args["disable"] else "ENABLED"
        key_id = _key_id(args)
        keys.set_status(purpose, key_id, status)
        print(f"{purpose}: key {key_id} {status.lower()}")
    else:
        print(f"{'purpose':<14} {'key id':>10}  {'status':<9} primary")
        for info in keys.list():
            print(f"{info.purpose:<14} {info.key_id:>10}  {info.status:<9} {'*' if info.primary else ''}")
    return 0


def _key_id(args: dict) -> int:
    try:
        return int(args["--key-id"])
    except ValueError:
        raise ConfigError("--key-id: a number, as `keys list` shows") from None


def _create_private(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path}: exists; refusing to overwrite") from None
