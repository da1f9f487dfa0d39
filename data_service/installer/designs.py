"""The install steps for the design documents: create, update, keep or remove each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .. import design
from ..couchdb import Conflict, Database, NotFound
from ..models import Models
from .step import InstallFailed, Step


async def design_steps(db: Database, exists: bool, models: Models) -> list[Step]:
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
