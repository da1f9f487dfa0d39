"""Design documents generated from the models file (pure: no I/O).

One design document per view (CouchDB compacts and reports ``_info`` per design
document, and a changed view rebuilds only its own index):

* ``_design/ds_<type>_v<major>-<prop>[-<prop>...]``, view ``index``: one per
  declared index of a type. Its map filters on the type name and major version
  and emits ``[value, ...]`` (the stored form: hashes/ciphertexts for protected
  properties) with a null value; queries fetch documents with ``include_docs``.
  Documents lacking one of the index's properties are not emitted.
* ``_design/ds_<type>_v<major>`` , view ``index``: every document of the type by
  creation time — what ``GET /v1/<type>`` lists when nothing is filtered.
* ``_design/ds_conflicts``, view ``index``: documents that carry ``_conflicts``.
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

_CONFLICTS_MAP = """function (doc) {
  if (doc._conflicts && doc.type) {
    emit([doc.type, doc._id], doc._conflicts.length);
  }
}"""


@dataclass(frozen=True)
class Index:
    """A declared index: which properties, in which order, in which design doc."""

    model: ModelType
    properties: tuple[str, ...]  # empty: the type's listing by creation time

    @property
    def design(self) -> str:
        base = f"{PREFIX}{self.model.name}_v{self.model.major}"
        return "-".join([base, *self.properties])

    @property
    def label(self) -> str:
        return "[" + ", ".join(self.properties) + "]" if self.properties else "(all, by creation)"

    def map_function(self) -> str:
        type_test = f"doc.type.indexOf({_js(self.model.name + '_v' + str(self.model.major) + '.')}) === 0"
        if not self.properties:
            return (
                f"function (doc) {{\n  if (typeof doc.type === 'string' && {type_test}) {{\n"
                f"    emit([doc.meta && doc.meta.created_at], null);\n  }}\n}}"
            )
        values = ", ".join(f"doc[{_js(p)}]" for p in self.properties)
        present = " && ".join(f"doc[{_js(p)}] !== undefined" for p in self.properties)
        return (
            f"function (doc) {{\n  if (typeof doc.type === 'string' && {type_test} && {present}) {{\n"
            f"    emit([{values}], null);\n  }}\n}}"
        )

    def design_doc(self) -> dict:
        return _marked({"language": "javascript", "views": {VIEW: {"map": self.map_function()}}})

    def key(self, doc: dict) -> list | None:
        """The key ``map_function`` emits for ``doc`` (None: not emitted), computed here."""
        tag = doc.get("type")
        if not isinstance(tag, str) or not tag.startswith(f"{self.model.name}_v{self.model.major}."):
            return None
        if not self.properties:
            meta = doc.get("meta")
            return [meta.get("created_at") if isinstance(meta, dict) else None]
        if any(p not in doc for p in self.properties):
            return None
        return [doc[p] for p in self.properties]


def indexes(model: ModelType) -> list[Index]:
    """The type's listing index, its declared ``indexes``, then single ``indexed`` properties.
    Raises ModelError for an index no view can serve."""
    found = [Index(model, ())]
    declared = [tuple(i) if isinstance(i, list) else (i,) for i in model.extras.get("indexes", [])]
    declared += [(p.name,) for p in model.properties.values() if p.indexed]
    for props in declared:
        where = f"type {model.name!r}, index [{', '.join(map(str, props))}]"
        for name in props:
            prop = model.properties.get(name)
            if prop is None:
                raise ModelError(f"{where}: {name!r} is not a declared property")
            if not prop.kind.queryable:
                raise ModelError(f"{where}: {prop.protection} values cannot be indexed")
            if prop.kind.equality_only and len(props) > 1:
                raise ModelError(
                    f"{where}: {prop.protection} properties may only be indexed alone "
                    "(their stored form changes with the key version)"
                )
        if len(set(props)) != len(props):
            raise ModelError(f"{where}: a property is repeated")
        index = Index(model, props)
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
