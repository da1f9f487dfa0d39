"""The install steps for who may use the database: the service user and ``_security``."""

from __future__ import annotations

from ..couchdb import CouchDB, Database, NotFound, Server, Unsupported
from ..couchdb.transport import path
from ..service_user import USERS_DB, Refused, ServiceUser, claim, session_roles
from .step import InstallFailed, Step

SERVICE_ROLE = "data-service"


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


async def user_step(couch: Server, user: ServiceUser, login: CouchDB) -> Step:
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


async def security_step(db: Database, exists: bool, *users: str | None) -> Step:
    existing = await db.security() if exists else {}
    wanted = wanted_security(existing, *users)
    if _normal(existing) == _normal(wanted):
        return Step("unchanged", "unchanged _security")
    text = f"set _security: members = {_who(wanted['members'])}; admins = {_who(wanted['admins'])}"
    return Step("update", text, lambda: db.put_security(wanted))
