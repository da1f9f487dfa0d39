"""``data-service install``: make the database what the models file says (or drop it)."""

from __future__ import annotations

import sys
from dataclasses import replace

from ..config import Config, ConfigError
from ..installer import InstallFailed, drop, install
from ..seeds import load_seeds
from ..server import connect, keyring
from ..service_user import ServiceUser
from .common import models_of


async def install_command(args: dict, config: Config) -> int:
    if args["--delete"]:
        return await _delete(config, confirmed=args["--yes"], dry_run=args["--dry-run"])
    models = models_of(config)
    keys = keyring(config)
    seeds = load_seeds(args["--seed"]) if args["--seed"] else None
    member = ServiceUser.from_args(args)
    async with connect(config) as couch, connect(_as_user(config, member)) as login:
        try:
            await install(
                couch,
                config.database,
                models,
                keys,
                user=config.couchdb_user,
                seeds=seeds,
                dry_run=args["--dry-run"],
                service_user=(member, login) if member else None,
                configure_server=args["--configure-server"],
            )
        except InstallFailed as exc:
            print(f"data-service: install failed: {exc}", file=sys.stderr)
            return 1
    return 0


async def _delete(config: Config, *, confirmed: bool, dry_run: bool) -> int:
    if not confirmed:
        raise ConfigError(
            f"install --delete drops the whole database {config.database!r} "
            "and every document in it; add --yes to confirm"
        )
    if dry_run:
        print(f"would delete database {config.database} (dry run: nothing was changed)")
        return 0
    async with connect(config) as couch:
        existed = await drop(couch, config.database)
    print(
        f"deleted database {config.database}"
        if existed
        else f"database {config.database} does not exist; nothing to delete"
    )
    return 0


def _as_user(config: Config, member: ServiceUser | None) -> Config:
    """The configuration with the service user's credentials (to check they log in)."""
    if member is None:
        return config
    return replace(config, couchdb_user=member.name, couchdb_password=member.password)
