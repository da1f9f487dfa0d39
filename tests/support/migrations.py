"""The member type of tests/migration_models_v1.yaml and _v2.yaml, and version 1 documents."""

from __future__ import annotations

from data_service.lifecycle import Lifecycle
from data_service.models import load_models
from support import ROOT

V1_PATH, V2_PATH = ROOT / "tests" / "migration_models_v1.yaml", ROOT / "tests" / "migration_models_v2.yaml"


V1, V2 = load_models(V1_PATH).get("member"), load_models(V2_PATH).get("member")


AT, LATER = "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"


ANN = {"nick": "ann", "email": "ann@example.com", "city": "Oslo", "legacy": "x", "country": "NO"}


def stored_v1(core: Lifecycle, values: dict = ANN, docid: str = "m1", rev: str = "3-c") -> dict:
    """A version 1 document as a version 1 sidecar wrote it, with a bcrypt password."""
    hashed = {"password": V1.properties["password"].kind.protect(core.keys, V1.slot("password", docid), "pw-1")}
    doc = core.create(V1, docid, {**values, "password": "pw-1"}, hashed, AT).doc
    return {**core.keys.sign(doc, int(rev.split("-")[0])), "_rev": rev}
