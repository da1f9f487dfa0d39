"""``data-service openapi``: the spec for a models file, as ``GET /openapi.json`` answers it."""

from __future__ import annotations

import sys

import orjson

from ..models import Models, load_models
from ..openapi import spec_for


def openapi_command(models_path: str | None) -> int:
    """The bytes ``GET /openapi.json`` answers (``write_json``: orjson, no options)."""
    models = load_models(models_path) if models_path else Models({})
    sys.stdout.buffer.write(orjson.dumps(spec_for(models)))
    sys.stdout.flush()
    return 0
