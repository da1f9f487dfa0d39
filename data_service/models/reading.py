"""Reading a models file's text: JSON, or YAML with JSON-like scalars, duplicate keys refused (pure)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml


class Unparsable(ValueError):
    """The text is not valid JSON or YAML; the message says where."""


def parse_json(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise Unparsable(f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except _DuplicateKey as exc:
        raise Unparsable(f"invalid JSON: duplicate key {exc.args[0]!r}") from None


def parse_yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        raise Unparsable(f"invalid YAML: {_yaml_problem(exc)}") from None


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML with JSON-like scalars (only true/false are booleans, no timestamps)
    and duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regex) for tag, regex in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context}{where}"
    return str(exc)
