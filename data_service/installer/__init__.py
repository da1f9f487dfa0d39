"""The database installer: make a database what the models file says it should be.

``install`` first lists its steps — one ``Step`` per thing it looks at — and then
applies the steps that change something (unless ``dry_run``), so a dry run and a
real run share one code path. In order:

1. the database (created if missing);
2. with ``--service-user``: its ``_users`` document (``access.user_step``), created, its
   password set, or an existing account adopted (``service_user.claim``); then
   ``_security``: that user, the installing user and role ``data-service`` added to the
   members, role ``_admin`` to the admins (members and admins already there are kept),
   so anonymous users are locked out;
3. the design docs of ``design.design_docs``: created, updated when their content
   hash differs, removed when generated earlier but no longer declared — those of an
   older major version of a type only once no document of that version is left;
   design docs without the ``data_service`` marker are never touched;
4. the server's ``uuids/algorithm`` reported (CouchDB's default is ``sequential``); set to
   ``sequential`` only with ``configure_server`` (``--configure-server``): it is a
   setting of the whole server, which other applications may share;
5. seed documents, upserted under ids derived from type + key, stored exactly as
   the service stores documents (validated, protected, signed).

Afterwards each created or updated view is queried once so its index is built
before traffic arrives. Running it again on an installed database changes nothing.
"""

from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from ..couchdb import CouchDB, IdPool, Server
from ..models import Models
from ..protection import Keyring
from ..seeds import Seed, check_seeds
from ..service_user import ServiceUser
from ..store import DocumentStore
from ..store.hashing import Hasher
from ..store.warmer import warm_up
from .access import security_step, user_step
from .designs import design_steps
from .seeding import seed_step
from .step import InstallFailed, Step
from .uuids import uuids_step

__all__ = ["InstallFailed", "InstallReport", "Step", "drop", "install", "install_steps"]

COUNTED = ("create", "update", "remove", "unchanged")


@dataclass
class InstallReport:
    database: str
    steps: list[Step]
    dry_run: bool
    counts: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.counts = Counter(step.kind for step in self.steps if step.kind in COUNTED)

    @property
    def changed(self) -> bool:
        return any(step.apply is not None for step in self.steps)

    def summary(self) -> str:
        c = self.counts
        if not self.changed:
            return f"install {self.database}: nothing to change ({c['unchanged']} unchanged)"
        if self.dry_run:
            return (
                f"install {self.database} (dry run): would create {c['create']}, update {c['update']}, "
                f"remove {c['remove']}; {c['unchanged']} unchanged; nothing was changed"
            )
        return (
            f"install {self.database}: {c['create']} created, {c['update']} updated, "
            f"{c['remove']} removed, {c['unchanged']} unchanged"
        )


async def install_steps(
    couch: Server,
    store: DocumentStore,
    models: Models,
    *,
    user: str | None,
    seeds: list[Seed],
    service_user: tuple[ServiceUser, CouchDB] | None = None,
    configure_server: bool = False,
) -> list[Step]:
    """Every step of an install, reading but never writing. ``service_user``: the user
    and a client that logs in as it; ``configure_server``: set the server-wide uuids algorithm."""
    db = store.db
    exists = await db.exists()
    steps = [] if exists else [Step("create", f"create database {db.name}", lambda: db.create(exist_ok=True))]
    if service_user is not None:
        steps.append(await user_step(couch, *service_user))
    steps.append(await security_step(db, exists, user, service_user[0].name if service_user else None))
    steps += await design_steps(db, exists, models)
    steps.append(await uuids_step(couch, configure_server))
    for seed in seeds:
        steps.append(await seed_step(store, exists, models.types[seed.type], seed))  # checked by check_seeds
    return steps


# -- applying ---------------------------------------------------------------------


async def install(
    couch: Server,
    db_name: str,
    models: Models,
    keys: Keyring,
    *,
    user: str | None = None,
    seeds: list[Seed] | None = None,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
    progress_out: TextIO = sys.stderr,
    service_user: tuple[ServiceUser, CouchDB] | None = None,
    configure_server: bool = False,
) -> InstallReport:
    """List the steps, print each, apply the ones that change something (unless ``dry_run``),
    then warm the new views. Raises SeedError before anything is read or written when
    a seed is invalid; InstallFailed or CouchDBError when the database cannot be installed."""
    seeds = list(seeds or [])
    check_seeds(models, seeds)
    db = couch.database(db_name)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt") as hasher:
        store = DocumentStore(db, IdPool(couch), keys, hasher=Hasher(hasher))
        steps = await install_steps(
            couch, store, models, user=user, seeds=seeds, service_user=service_user, configure_server=configure_server
        )
        report = InstallReport(db_name, steps, dry_run)
        if dry_run:
            print(f"install {db_name}: dry run, nothing will be changed", file=out)
        for step in report.steps:
            print(step.text, file=out, flush=True)
            if step.apply is not None and not dry_run:
                await step.apply()
        if not dry_run:
            await warm_up(db, [step.warm for step in report.steps if step.warm], progress_out)
    print(report.summary(), file=out, flush=True)
    return report


async def drop(couch: Server, db_name: str) -> bool:
    """Delete the whole database; False if there was none."""
    db = couch.database(db_name)
    if not await db.exists():
        return False
    await db.drop(missing_ok=True)
    return True
