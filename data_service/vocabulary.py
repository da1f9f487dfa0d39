"""The words for documents and answers, defined once (pure, the bottom of the import layers).

A document exists in four shapes on its way between CouchDB and a caller; each has
its name here so a signature says which one it takes:

* ``Stored``: a document as CouchDB holds it — the envelope (``_id``, ``_rev``,
  ``type``, ``meta``, ``sig``) and the property values in their protected form
  (ciphertexts, hashes); also an Idempotency-Key record or a tombstone.
* ``Clear``: property values by name, in clear (decrypted), as a caller sent them or
  as the lifecycle revealed them.
* ``Representation``: what the API answers for a document: ``id``, ``meta`` and the
  readable values in clear.
* ``CouchDBAnswer``: one JSON object CouchDB answered (a body, a row, a ``_bulk_docs`` or
  ``_bulk_get`` result, a change).

They are aliases of ``dict[str, Any]`` (JSON objects): they name the meaning; mypy
does not tell one from another.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
Stored: TypeAlias = dict[str, Any]
Clear: TypeAlias = dict[str, Any]
Representation: TypeAlias = dict[str, Any]
CouchDBAnswer: TypeAlias = dict[str, Any]
