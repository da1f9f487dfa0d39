"""The install step for the server's uuids algorithm: reported, set only when asked."""

from __future__ import annotations

from ..couchdb import NotFound, Server, Unsupported
from .step import Step

UUIDS_ALGORITHM = "sequential"


ID_SHAPES = {  # what ids of each CouchDB uuids algorithm look like (CouchDB's default: sequential)
    "sequential": "a random prefix and an increasing suffix, so new documents land together in the b-tree",
    "random": "new documents land all over the b-tree (larger files, slower writes and view builds)",
    "utc_random": "time-ordered: microseconds since 1970, then random",
    "utc_id": "time-ordered: microseconds since 1970, then the configured utc_id_suffix",
    "uuid_v7": "time-ordered UUIDs (version 7)",
}


async def uuids_step(couch: Server, configure: bool) -> Step:
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
