"""The database installer: make a database what the models file says it should be.

``install`` first lists its steps — one ``Step`` per thing it looks at — and then
applies the steps that change something (unless ``dry_run``), so a dry run and a
real run share one code path. In order:

1. the database (created if missing);
2. with ``--service-user``: its ``_users`` document (``_user_step``), created, its
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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import design
from .couchdb import Conflict, CouchDB, Database, IdPool, NotFound, Server, Unsupported
from .couchdb.transport import path
from .models import Models, ModelType
from .protection import IntegrityViolation, Keyring, KeyUnavailable
from .seeds import Seed, check_seeds
from .service_user import USERS_DB, Refused, ServiceUser, claim, session_roles
from .store import ANY_REVISION, DocumentNotFound, DocumentStore
from .store.hashing import Hasher
from .store.warmer import warm_up

SERVICE_ROLE = "data-service"
UUIDS_ALGORITHM = "sequential"
COUNTED = ("create", "update", "remove", "unchanged")


class InstallFailed(Exception):
    """The database is in a state the installer will not overwrite; the message says why."""


@dataclass
class Step:
    """One line of an install. ``kind`` is create, update, remove, unchanged or note;
    ``apply`` is None when there is nothing to do; ``warm`` names a design doc whose
    view to query once applied."""

    kind: str
    text: str
    apply: Callable[[], Awaitable[Any]] | None = None
    warm: str | None = None


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


# -- the steps --------------------------------------------------------------------


def wanted_security(existing: dict, *users: str | None) -> dict:
    """``existing`` with ``users`` and the service role added to the members and
    ``_admin`` to the admins; nobody already named is removed."""

    def joined(part: str, key: str, more: list[str]) -> list[str]:
        have = list((existing.get(part) or {}).get(key) or [])
        return have + [name for name in more if name not in have]

    return {
        **existing,
        "admins": {"names": joined("admins", "names", []), "roles": joined("admins", "roles", ["_admin"])},
        "members": {
            "names": joined("members", "names", [user for user in users if user]),
            "roles": joined("members", "roles", [SERVICE_ROLE]),
        },
    }


def _normal(security: dict) -> dict:
    """Order and absent lists do not count as differences."""
    groups = {
        part: {k: sorted((security.get(part) or {}).get(k) or []) for k in ("names", "roles")}
        for part in ("admins", "members")
    }
    return {**security, **groups}


def _who(group: dict) -> str:
    return " + ".join([f"user {n}" for n in group["names"]] + [f"role {r}" for r in group["roles"]])


async def _user_step(couch: Server, user: ServiceUser, login: CouchDB) -> Step:
    """Create the service user, set its password, or adopt an existing account, as
    ``service_user.claim`` decides. ``couch`` is the installer's admin client, ``login``
    one with the user's credentials, tried only on an account that exists (a failed login
    counts toward CouchDB's lockout of the name)."""
    target = path(USERS_DB, user.doc_id)
    try:
        existing = await couch.json("GET", target)
    except NotFound:
        existing = None
    logs_in = existing is not None and await session_roles(login) is not None
    try:
        decided = claim(user, existing, logs_in=logs_in, admin=await _server_admin(couch, login, user.name))
    except Refused as exc:
        raise InstallFailed(str(exc)) from None
    doc = decided.doc
    if doc is None:
        return Step(decided.kind, decided.text)
    return Step(decided.kind, decided.text, lambda: couch.request("PUT", target, json=doc))


async def _server_admin(couch: Server, login: CouchDB, name: str) -> bool:
    """Whether ``name`` is a server admin: in the node config, or on a server without one
    (the dev server, which has no login lockout) by the session of the password given."""
    try:
        await couch.config_get("admins", name)
    except Unsupported:  # before NotFound, which it is a kind of
        return "_admin" in (await session_roles(login) or ())
    except NotFound:
        return False
    return True


async def _security_step(db: Database, exists: bool, *users: str | None) -> Step:
    existing = await db.security() if exists else {}
    wanted = wanted_security(existing, *users)
    if _normal(existing) == _normal(wanted):
        return Step("unchanged", "unchanged _security")
    text = f"set _security: members = {_who(wanted['members'])}; admins = {_who(wanted['admins'])}"
    return Step("update", text, lambda: db.put_security(wanted))


async def _design_steps(db: Database, exists: bool, models: Models) -> list[Step]:
    wanted = design.design_docs(models)
    existing = await db.design_docs(wanted) if exists else {}
    diff = design.diff(existing, wanted)
    if diff.foreign:
        name = diff.foreign[0]
        raise InstallFailed(
            f"_design/{name} exists without the data_service marker (not made by the installer); "
            "rename or remove it, then run install again"
        )
    steps = []
    for name in sorted(wanted):
        doc, warm = wanted[name], name if wanted[name].get("views") else None
        if name in diff.missing:
            steps.append(Step("create", f"create _design/{name}", _put_design(db, name, doc, None), warm))
        elif name in diff.outdated:
            steps.append(
                Step(
                    "update",
                    f"update _design/{name} (content changed)",
                    _put_design(db, name, doc, existing[name]["_rev"]),
                    warm,
                )
            )
        else:
            steps.append(Step("unchanged", f"unchanged _design/{name}"))
    older = await _older_versions(db, models, diff.removable)
    for name in diff.removable:
        left = older.get(name)
        if left:
            steps.append(Step("note", f"keep _design/{name}: {left} still use it (data-service migrate upgrades them)"))
        else:
            why = "no document of that version left" if name in older else "no longer declared"
            steps.append(
                Step(
                    "remove",
                    f"remove _design/{name} (generated earlier, {why})",
                    _delete_design(db, name, existing[name]["_rev"]),
                )
            )
    steps += [
        Step("note", f"leave _design/{name} (no data_service marker: not managed here)") for name in diff.unmanaged
    ]
    return steps


async def _older_versions(db: Database, models: Models, names: list[str]) -> dict[str, str]:
    """Which of the design docs ``names`` (generated, no longer declared) belong to an
    older major version of a declared type, and how many documents of that version are
    left ("" for none) — counted with that version's listing view, which is kept as long
    as they are. Old documents are in their version's views only until migrated, and
    sidecars still running the older models file query them there."""
    found: dict[str, str] = {}
    for model in models:
        for major in range(model.major):
            listing = f"{design.PREFIX}{model.name}_v{major}"
            mine = [name for name in names if name == listing or name.startswith(listing + "-")]
            if mine and listing in names:
                count = (await db.view(listing, design.VIEW, limit=0)).total_rows
                left = f"{count} documents of {model.name} version {major}" if count else ""
                found.update(dict.fromkeys(mine, left))
    return found


def _put_design(db: Database, name: str, doc: dict, rev: str | None) -> Callable[[], Awaitable[None]]:
    async def apply() -> None:
        try:
            await db.put_design(name, {**doc, "_rev": rev} if rev else doc)
        except Conflict:  # our own retried PUT, or another installer: fine if it now holds what we want
            current = await db.get(f"_design/{name}")
            if design.content_hash(current) != design.content_hash(doc):
                raise InstallFailed(f"_design/{name} changed while installing; run install again") from None

    return apply


def _delete_design(db: Database, name: str, rev: str) -> Callable[[], Awaitable[None]]:
    async def apply() -> None:
        try:
            await db.delete(f"_design/{name}", rev)
        except (Conflict, NotFound):
            try:
                await db.get(f"_design/{name}")
            except NotFound:
                return  # already gone
            raise InstallFailed(f"_design/{name} changed while installing; run install again") from None

    return apply


ID_SHAPES = {  # what ids of each CouchDB uuids algorithm look like (CouchDB's default: sequential)
    "sequential": "a random prefix and an increasing suffix, so new documents land together in the b-tree",
    "random": "new documents land all over the b-tree (larger files, slower writes and view builds)",
    "utc_random": "time-ordered: microseconds since 1970, then random",
    "utc_id": "time-ordered: microseconds since 1970, then the configured utc_id_suffix",
    "uuid_v7": "time-ordered UUIDs (version 7)",
}


async def _uuids_step(couch: Server, configure: bool) -> Step:
    """Report the server's uuids algorithm and what the ids look like; write it (a setting of
    the whole server, which other applications may share) only when ``configure``."""
    info = await couch.server_info()
    sample = (await couch.uuids(1))[0]
    unsupported = Step(
        "note", f"uuids/algorithm: not supported by {info.kind}; ids stay as the server makes them, like {sample}"
    )
    if not info.supports_node_config:
        return unsupported
    try:
        current = await couch.config_get("uuids", "algorithm")
    except Unsupported:
        return unsupported
    except NotFound:
        current = None
    if (current or UUIDS_ALGORITHM) == UUIDS_ALGORITHM:
        default = "" if current else " (CouchDB's default)"
        return Step("unchanged", f"unchanged uuids/algorithm = {UUIDS_ALGORITHM}{default}: ids like {sample}")
    if not configure:
        return Step(
            "note",
            f"uuids/algorithm = {current}: ids like {sample}; {ID_SHAPES.get(current, 'see CouchDB documentation')}. "
            f"{UUIDS_ALGORITHM.capitalize()} is better for CouchDB's b-trees; it is a server-wide setting: "
            f"install --configure-server sets it, or [uuids] algorithm = {UUIDS_ALGORITHM} in CouchDB's local.ini",
        )
    return Step(
        "update",
        f"set uuids/algorithm = {UUIDS_ALGORITHM} (was {current}; server-wide: every database's new ids)",
        lambda: couch.config_put("uuids", "algorithm", UUIDS_ALGORITHM),
    )


async def _seed_step(store: DocumentStore, exists: bool, model: ModelType, seed: Seed) -> Step:
    docid = seed.docid
    create = Step("create", f"create {seed.label} ({docid})", lambda: store.create_with_id(model, docid, seed.data))
    if not exists:
        return create
    try:
        doc = await store.read(model, docid)
    except DocumentNotFound:
        try:
            await store.db.get(docid)
        except NotFound:
            return create
        return Step("note", f"leave {seed.label}: {docid} is deleted or not a {model.name} v{model.major}")
    except (IntegrityViolation, KeyUnavailable) as exc:
        raise InstallFailed(f"{seed.label}: document {docid} fails its check ({exc}); not overwritten") from None
    if await _same(store, model, doc, seed.data):
        return Step("unchanged", f"unchanged {seed.label}")
    return Step(
        "update",
        f"update {seed.label} ({docid}: properties differ)",
        lambda: store.replace(model, docid, seed.data, frozenset({ANY_REVISION})),
    )


async def _same(store: DocumentStore, model: ModelType, doc: dict, data: dict) -> bool:
    """Whether ``doc`` holds ``data``: readable values compared in clear, hashed ones verified."""
    hidden = {name for name, prop in model.properties.items() if not prop.readable}
    shown = {k: v for k, v in store.lifecycle.representation(model, doc).items() if k not in ("id", "meta")}
    if shown != {k: v for k, v in data.items() if k not in hidden}:
        return False
    secrets = {k: v for k, v in data.items() if k in hidden}
    if set(secrets) != hidden & set(doc) or not all(isinstance(v, str) for v in secrets.values()):
        return False
    return not secrets or all((await store.verify_secrets(model, doc["_id"], secrets)).values())


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
        steps.append(await _user_step(couch, *service_user))
    steps.append(await _security_step(db, exists, user, service_user[0].name if service_user else None))
    steps += await _design_steps(db, exists, models)
    steps.append(await _uuids_step(couch, configure_server))
    for seed in seeds:
        steps.append(await _seed_step(store, exists, models.types[seed.type], seed))  # checked by check_seeds
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
