"""Design documents generated from the models file (pure: no I/O).

One design document per view (CouchDB compacts and reports ``_info`` per design
document, and a changed view rebuilds only its own index):

* ``_design/ds_<type>_v<major>-<prop>[-<prop>...]``, view ``index``: one per
  declared index of a type. Its map filters on the type name and major version
  and emits ``[value, ...]`` (the stored form: hashes/ciphertexts for protected
  properties) with, as the value, how many deleted leaves lie above the live winner
  (null for none: the trace of a rollback, checked before a page shows the document);
  queries fetch documents with ``include_docs``.
  Documents lacking one of the index's properties are not emitted.
* ``_design/ds_<type>_v<major>`` , view ``index``: every document of the type by
  creation time — what ``GET /v1/<type>`` lists when nothing is filtered.
* ``_design/ds_conflicts``, view ``index``: documents that carry ``_conflicts``, or
  a deleted leaf of a higher generation than the live winner.
* ``_design/ds_idempotency``, view ``index``: Idempotency-Key records by expiry
  time (value: their revision), for the sweep that deletes expired ones.
* ``_design/data_service_guard``: ``validate_doc_update`` rejecting writes that
  bypass the sidecar.

Every generated design document carries ``"data_service": {"generated": true,
"hash": <sha256 of its content>}``: the installer updates a design doc only when
the hash differs and removes only design docs that carry the marker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from .models import ModelError, Models, ModelType

VIEW = "index"
PREFIX = "ds_"
GUARD_NAME = "data_service_guard"
CONFLICTS_NAME = "ds_conflicts"
IDEMPOTENCY_NAME = "ds_idempotency"

# Rejects writes that bypass the sidecar: every document must carry a versioned
# type tag and the signature envelope. (It cannot check the MAC: CouchDB has no keys.)
VALIDATE_DOC_UPDATE = r"""function (newDoc, oldDoc, userCtx, secObj) {
  if (newDoc._deleted || newDoc._id.indexOf('_design/') === 0) {
    return;
  }
  if (typeof newDoc.type !== 'string' ||
      !(/^[a-z][a-z0-9_]*_v\d+\.\d+$/.test(newDoc.type) || /^ds:[a-z_]+_v\d+$/.test(newDoc.type))) {
    throw({forbidden: 'data-service: type must be <name>_v<major>.<minor>'});
  }
  var sig = newDoc.sig;
  if (!sig || typeof sig !== 'object' || typeof sig.kid !== 'number' || typeof sig.mac !== 'string') {
    throw({forbidden: 'data-service: document lacks the signature envelope'});
  }
}"""

_IDEMPOTENCY_MAP = """function (doc) {
  if (doc.type === 'ds:idempotency_v1') {
    emit(doc.expires_at, doc._rev);
  }
}"""

# Conflicted documents, and documents with a deleted leaf above the live winner (the
# trace of a rollback, or a tombstone the reconciler has yet to write above: see
# docs/consistency.md). Map functions see _deleted_conflicts on CouchDB, not on the dev server.
# How many deleted leaves of a document lie above its live winner (a map function's ``above``).
_ABOVE = """var level = parseInt(doc._rev, 10), above = 0;
  (doc._deleted_conflicts || []).forEach(function (rev) {
    if (parseInt(rev, 10) > level) { above += 1; }
  });"""
_CONFLICTS_MAP = (
    """function (doc) {
  """
    + _ABOVE
    + """
  if (doc.type && (doc._conflicts || above)) {
    emit([doc.type, doc._id], (doc._conflicts || []).length + above);
  }
}"""
)


META_FIELDS = ("meta.created_at", "meta.updated_at")  # kept by the service: indexable like properties
LISTING_FIELD = "meta.created_at"  # what the type's listing index (no declared fields) is keyed by


@dataclass(frozen=True)
class Index:
    """A declared index: which fields (properties or ``META_FIELDS``), in which order,
    in which design doc."""

    model: ModelType
    properties: tuple[str, ...]  # empty: the type's listing, by creation time

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields its keys hold, in order."""
        return self.properties or (LISTING_FIELD,)

    @property
    def design(self) -> str:
        base = f"{PREFIX}{self.model.name}_v{self.model.major}"
        return "-".join([base, *self.properties])

    @property
    def label(self) -> str:
        return "[" + ", ".join(self.properties) + "]" if self.properties else f"(all, by {LISTING_FIELD})"

    def map_function(self) -> str:
        type_test = f"doc.type.indexOf({_js(self.model.name + '_v' + str(self.model.major) + '.')}) === 0"
        values = ", ".join(_js_field(f) for f in self.fields)
        present = "".join(f" && {_js_field(f)} !== undefined" for f in self.properties)
        return (
            f"function (doc) {{\n  if (typeof doc.type === 'string' && {type_test}{present}) {{\n    {_ABOVE}\n"
            f"    emit([{values}], above || null);\n  }}\n}}"
        )

    def design_doc(self) -> dict:
        return _marked({"language": "javascript", "views": {VIEW: {"map": self.map_function()}}})

    def key(self, doc: dict) -> list | None:
        """The key ``map_function`` emits for ``doc`` (None: not emitted), computed here."""
        tag = doc.get("type")
        if not isinstance(tag, str) or not tag.startswith(f"{self.model.name}_v{self.model.major}."):
            return None
        values = [field_value(doc, f) for f in self.fields]
        if any(v is _ABSENT for v in values[: len(self.properties)]):
            return None
        return [None if v is _ABSENT else v for v in values]


_ABSENT: Any = object()


def field_value(doc: dict, name: str) -> Any:
    """A property's stored value or a meta field of ``doc`` (``_ABSENT`` when it has none)."""
    if name in META_FIELDS:
        meta = doc.get("meta")
        return meta.get(name.partition(".")[2], _ABSENT) if isinstance(meta, dict) else _ABSENT
    return doc.get(name, _ABSENT)


def _js_field(name: str) -> str:
    if name in META_FIELDS:  # the listing's map has said it this way from the start: its hash stays
        return f"doc.meta && doc.meta.{name.partition('.')[2]}"
    return f"doc[{_js(name)}]"


def indexes(model: ModelType) -> list[Index]:
    """The type's listing index, its declared ``indexes``, then single ``indexed`` properties.
    Raises ModelError for an index no view can serve."""
    found = [Index(model, ())]
    declared = [tuple(i) if isinstance(i, list) else (i,) for i in model.extras.get("indexes", [])]
    declared += [(p.name,) for p in model.properties.values() if p.indexed]
    for fields in declared:
        where = f"type {model.name!r}, index [{', '.join(map(str, fields))}]"
        for name in fields:
            prop = model.properties.get(name)
            if prop is None and name not in META_FIELDS:
                raise ModelError(f"{where}: {name!r} is not a declared property (nor one of {', '.join(META_FIELDS)})")
            if prop is not None and not prop.kind.queryable:
                raise ModelError(f"{where}: {prop.protection} values cannot be indexed")
            if prop is not None and prop.kind.equality_only and len(fields) > 1:
                raise ModelError(
                    f"{where}: {prop.protection} properties may only be indexed alone "
                    "(their stored form changes with the key version)"
                )
        if len(set(fields)) != len(fields):
            raise ModelError(f"{where}: a property is repeated")
        index = Index(model, fields)
        if index not in found:
            found.append(index)
    return found


def design_docs(models: Models) -> dict[str, dict]:
    """Every design document the installer maintains, by name (without ``_design/``)."""
    docs = {index.design: index.design_doc() for model in models for index in indexes(model)}
    docs[CONFLICTS_NAME] = _marked({"language": "javascript", "views": {VIEW: {"map": _CONFLICTS_MAP}}})
    docs[IDEMPOTENCY_NAME] = _marked({"language": "javascript", "views": {VIEW: {"map": _IDEMPOTENCY_MAP}}})
    docs[GUARD_NAME] = guard()
    return docs


def query_designs(models: Models) -> list[str]:
    """The design documents callers' queries read: every index of every type (the
    sweeper's and the expiry job's views are read on their own schedules)."""
    return [index.design for model in models for index in indexes(model)]


def guard() -> dict:
    """``_design/data_service_guard``: the validate_doc_update above."""
    return _marked({"language": "javascript", "validate_doc_update": VALIDATE_DOC_UPDATE})


@dataclass(frozen=True)
class DesignDiff:
    """Installed design documents against the wanted ones (names without ``_design/``)."""

    missing: list[str]  # wanted, not installed
    outdated: list[str]  # installed by us, content differs
    current: list[str]  # installed, content as wanted
    foreign: list[str]  # wanted names taken by design docs we did not make
    removable: list[str]  # made by us earlier, no longer wanted
    unmanaged: list[str]  # not wanted, not ours: never touched

    @property
    def installed(self) -> bool:
        return not (self.missing or self.outdated or self.foreign)


def diff(installed: dict[str, dict], wanted: dict[str, dict]) -> DesignDiff:
    """What the installer would change; what readiness reports."""
    names: dict[str, list[str]] = {k: [] for k in ("missing", "outdated", "current", "foreign")}
    for name in sorted(wanted):
        have = installed.get(name)
        if have is None:
            names["missing"].append(name)
        elif not is_generated(have):
            names["foreign"].append(name)
        elif content_hash(have) != content_hash(wanted[name]):
            names["outdated"].append(name)
        else:
            names["current"].append(name)
    others = sorted(set(installed) - set(wanted))
    return DesignDiff(
        **names,
        removable=[n for n in others if is_generated(installed[n])],
        unmanaged=[n for n in others if not is_generated(installed[n])],
    )


def content_hash(design: dict) -> str:
    body = {k: v for k, v in design.items() if k not in ("_id", "_rev", "data_service")}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def is_generated(design: dict) -> bool:
    return bool((design.get("data_service") or {}).get("generated"))


def _marked(design: dict) -> dict:
    return {**design, "data_service": {"generated": True, "hash": content_hash(design)}}


def _js(text: str) -> str:
    return orjson.dumps(text).decode()
