"""Seed documents for the installer: read from a YAML or JSON file and checked against
the models before anything is written. Each seed has a stable id derived from its type
and key, so re-running an install upserts instead of duplicating."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import ConfigError
from .models import Models, ValidationFailed


class SeedError(ConfigError):
    """A seeds file that cannot be used (unreadable, malformed, unknown type, invalid data)."""


@dataclass(frozen=True)
class Seed:
    type: str
    key: str
    data: dict

    @property
    def label(self) -> str:
        return f"seed {self.type}/{self.key}"

    @property
    def docid(self) -> str:
        return seed_id(self.type, self.key)


def seed_id(type_name: str, key: str) -> str:
    """The stable document id of a seed: re-running an install never duplicates it."""
    return "seed-" + hashlib.sha256(f"{type_name}\0{key}".encode()).hexdigest()[:32]


def load_seeds(path: str | Path) -> list[Seed]:
    """Read ``{"seeds": [{"type": .., "key": .., "data": {..}}, ...]}`` (YAML or JSON)."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # JSON is YAML too
    except OSError as exc:
        raise SeedError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SeedError(f"{source}: not a YAML or JSON file: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"seeds"} or not isinstance(data["seeds"], list):
        raise SeedError(f'{source}: expected {{"seeds": [{{"type": ..., "key": ..., "data": {{...}}}}, ...]}}')
    seeds, seen = [], set()
    for n, item in enumerate(data["seeds"]):
        where = f"{source}: seeds[{n}]"
        if not isinstance(item, dict) or set(item) != {"type", "key", "data"}:
            raise SeedError(f"{where}: needs exactly the keys type, key and data")
        if not isinstance(item["type"], str) or not isinstance(item["key"], str) or not item["key"]:
            raise SeedError(f"{where}: type and key must be non-empty strings")
        if not isinstance(item["data"], dict):
            raise SeedError(f"{where} ({item['type']}/{item['key']}): data must be an object")
        if (item["type"], item["key"]) in seen:
            raise SeedError(f"{where}: seed {item['type']}/{item['key']} appears twice")
        seen.add((item["type"], item["key"]))
        try:
            values = json.loads(json.dumps(item["data"]))  # YAML dates and the like are not JSON
        except (TypeError, ValueError) as exc:
            raise SeedError(f"{where} ({item['type']}/{item['key']}): data is not JSON: {exc}") from None
        seeds.append(Seed(item["type"], item["key"], values))
    return seeds


def check_seeds(models: Models, seeds: list[Seed]) -> None:
    """Raise SeedError naming every seed of an unknown type or with invalid data."""
    problems = []
    for seed in seeds:
        model = models.get(seed.type)
        if model is None:
            known = ", ".join(m.name for m in models) or "none"
            problems.append(f"{seed.label}: unknown type {seed.type!r} (the models file declares: {known})")
            continue
        try:
            model.validate(seed.data)
        except ValidationFailed as exc:
            problems.append(f"{seed.label}: " + "; ".join(f"{v.path or '/'}: {v.message}" for v in exc.violations))
    if problems:
        raise SeedError("invalid seeds, nothing installed:\n  " + "\n  ".join(problems))
