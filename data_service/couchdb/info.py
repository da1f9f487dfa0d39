"""What ``GET /`` says about a server: its kind and abilities (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerInfo:
    """``GET /`` and what it tells about the server's kind and abilities."""

    raw: dict

    @property
    def kind(self) -> str:
        if "couchdb" in self.raw:
            return "couchdb"
        if "express-pouchdb" in self.raw:
            return "pouchdb-server"
        return "unknown"

    @property
    def version(self) -> str | None:
        return self.raw.get("version")

    @property
    def supports_node_config(self) -> bool:
        return self.kind == "couchdb"

    @property
    def supports_deleted_conflicts(self) -> bool:
        """Reads by id list deleted leaves (``deleted_conflicts``), ``_bulk_get`` without
        a revision gives every leaf and map functions see ``_deleted_conflicts``:
        CouchDB does, pouchdb-server does not."""
        return self.kind == "couchdb"

    @property
    def supports_startkey_docid(self) -> bool:
        """pouchdb-server ignores ``startkey_docid`` in view queries."""
        return self.kind != "pouchdb-server"
