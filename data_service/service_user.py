"""The least-privilege CouchDB user ``serve`` runs as (``install --service-user=NAME``).

The installer, as a server admin, makes sure a ``_users`` document exists for the name
(no roles: a member only of the databases whose ``_security`` names it, never of every
data-service database through a shared role) and that the password given logs in; the
installer adds the name to the database's ``_security`` members. Serving then needs no
admin: members read and write documents and query views; design documents, ``_security``
and node config stay with the admin (the installer).
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


@dataclass(frozen=True)
class ServiceUser:
    name: str
    password: str = field(repr=False)

    @property
    def doc_id(self) -> str:
        return f"org.couchdb.user:{self.name}"

    @classmethod
    def from_args(cls, args: Mapping, env: Mapping[str, str] = os.environ) -> ServiceUser | None:
        """From ``--service-user`` and its password file (or environment variable)."""
        name = args.get("--service-user")
        if not name:
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
        return cls(name, password)


async def logs_in(login: CouchDB) -> bool:
    """Whether the client's credentials are accepted (``GET /_session`` names the user)."""
    try:
        session = await login.json("GET", "/_session")
    except Unauthorized:
        return False
    return bool((session.get("userCtx") or {}).get("name"))
