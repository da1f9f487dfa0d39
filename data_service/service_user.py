"""The least-privilege CouchDB user ``serve`` runs as (``install --service-user=NAME``).

The installer, as a server admin, makes sure a ``_users`` document exists for the name
(no roles: a member only of the databases whose ``_security`` names it, never of every
data-service database through a shared role) and that the password given logs in; the
installer adds the name to the database's ``_security`` members. Serving then needs no
admin: members read and write documents and query views; design documents, ``_security``
and node config stay with the admin (the installer).

An account is the installer's when its document carries ``MARKER`` (written only by the
installer; ``_users`` documents are admin-only on CouchDB 3 by default). Another existing
account is taken over only with ``--service-user-adopt`` — or, with no roles, when the
password given already logs in (whoever holds it owns the account). An account with
roles never silently; a server admin never (``claim``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import secretfiles
from .config import ConfigError
from .couchdb import CouchDB, Unauthorized

PASSWORD_ENV = "DATA_SERVICE_SERVICE_USER_PASSWORD"
USERS_DB = "_users"


MARKER, MARK = "data_service", {"service_user": True}  # on the _users documents the installer owns


class Refused(Exception):
    """An account the installer must not take over; the message says what to do."""


@dataclass(frozen=True)
class ServiceUser:
    name: str
    password: str = field(repr=False)
    adopt: bool = False  # --service-user-adopt: take over an account the installer did not create

    @property
    def doc_id(self) -> str:
        return f"org.couchdb.user:{self.name}"

    @classmethod
    def from_args(cls, args: Mapping, env: Mapping[str, str] = os.environ) -> ServiceUser | None:
        """From ``--service-user`` and its password file (or environment variable)."""
        name = args.get("--service-user")
        if not name:
            if args.get("--service-user-adopt"):
                raise ConfigError("--service-user-adopt: only with --service-user=NAME")
            return None
        if name.startswith("_") or ":" in name or not name.strip() or len(name) > 200:
            raise ConfigError("--service-user: a CouchDB user name (no leading '_', no ':')")
        file = args.get("--service-user-password-file")
        if file:
            try:
                password = secretfiles.read_text(file).strip()
            except secretfiles.UnsafeSecret as exc:
                raise ConfigError(f"--service-user-password-file: {exc}") from None
        else:
            password = env.get(PASSWORD_ENV, "")
        if len(password) < 12:
            raise ConfigError(
                f"--service-user needs a password of 12 characters or more, from "
                f"--service-user-password-file or ${PASSWORD_ENV}"
            )
        return cls(name, password, bool(args.get("--service-user-adopt")))


@dataclass(frozen=True)
class Claim:
    """What the installer does with the account: ``kind`` create, update or unchanged;
    ``doc`` the ``_users`` document to write (None: nothing to write)."""

    kind: str
    text: str
    doc: dict | None = None


def claim(user: ServiceUser, existing: dict | None, *, logs_in: bool, admin: bool) -> Claim:
    """The one decision about the account named ``user.name``: ``existing`` its ``_users``
    document (None: none), ``logs_in`` whether the password given is accepted, ``admin``
    whether the name is a server admin. Raises Refused for an account not to be taken."""
    name = user.name
    if admin or "_admin" in ((existing or {}).get("roles") or ()):
        raise Refused(
            f"CouchDB user {name} is a server admin; the service user must be a plain member: "
            "choose another --service-user name"
        )
    if existing is None:
        doc = {"_id": user.doc_id, "name": name, "type": "user", "roles": [], "password": user.password, MARKER: MARK}
        return Claim("create", f"create CouchDB user {name} (no roles)", doc)
    roles, marked = list(existing.get("roles") or []), existing.get(MARKER) == MARK
    if roles and not user.adopt:
        raise Refused(
            f"CouchDB user {name} exists with roles {', '.join(roles)} (the sidecar would have their rights): "
            "choose another --service-user name, or add --service-user-adopt to take it over with them"
        )
    if not (marked or logs_in or user.adopt):
        raise Refused(
            f"CouchDB user {name} exists and was not created by data-service install: installing would set its "
            "password. Choose another --service-user name, or add --service-user-adopt to take it over"
        )
    if marked and logs_in:
        return Claim("unchanged", f"unchanged CouchDB user {name}")
    doc = {**existing, MARKER: MARK, **({} if logs_in else {"password": user.password})}
    if marked:
        return Claim("update", f"set the password of CouchDB user {name}", doc)
    how = "it logs in with the password given; " if logs_in else "set its password, "
    kept = f"roles kept: {', '.join(roles)}" if roles else "no roles"
    return Claim("update", f"adopt CouchDB user {name}: {how}mark it as the service user ({kept})", doc)


async def session_roles(login: CouchDB) -> list[str] | None:
    """The roles of the client's user (``GET /_session``); None if its credentials are refused."""
    try:
        session = await login.json("GET", "/_session")
    except Unauthorized:
        return None
    context = session.get("userCtx") or {}
    return list(context.get("roles") or []) if context.get("name") else None
