"""Design documents the installer puts in the database (pure: generated, not I/O)."""

from __future__ import annotations

GUARD_NAME = "data_service_guard"

# Rejects writes that bypass the sidecar: every document must carry a versioned
# type tag and the signature envelope. (It cannot check the MAC: CouchDB has no keys.)
VALIDATE_DOC_UPDATE = r"""function (newDoc, oldDoc, userCtx, secObj) {
  if (newDoc._deleted || newDoc._id.indexOf('_design/') === 0) {
    return;
  }
  if (typeof newDoc.type !== 'string' || !/^[a-z][a-z0-9_]*_v\d+\.\d+$/.test(newDoc.type)) {
    throw({forbidden: 'data-service: type must be <name>_v<major>.<minor>'});
  }
  var sig = newDoc.sig;
  if (!sig || typeof sig !== 'object' || typeof sig.kid !== 'number' || typeof sig.mac !== 'string') {
    throw({forbidden: 'data-service: document lacks the signature envelope'});
  }
}"""


def guard() -> dict:
    """``_design/data_service_guard``: the validate_doc_update above."""
    return {"language": "javascript", "validate_doc_update": VALIDATE_DOC_UPDATE}
