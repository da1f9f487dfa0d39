"""The OpenAPI spec's static patterns compile as Python regular expressions."""

from __future__ import annotations

import re

from data_service.openapi import load_spec


def test_static_patterns_compile_as_python_regexes():
    """The patterns are ECMA regexes for clients; they must also be valid Python ones (the tests' validator)."""
    schemas = load_spec()["components"]["schemas"]
    for name in ("DocumentId", "ETagCondition", "Token", "Position"):
        re.compile(schemas[name]["pattern"])
