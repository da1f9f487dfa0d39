"""A run's result as text: operations, acknowledged writes, faults injected, each
violation count with examples, the cross-sidecar staleness distribution."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .check import FAILING, REPORTED, Result


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 when there are none)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(values)))
    return values[min(rank, len(values)) - 1]


def staleness_line(result: Result) -> str:
    lags = result.staleness
    if not lags:
        return f"cross-sidecar staleness: no stale read in {result.reads} reads"
    ms = [1000 * lag for lag in lags]
    return (
        f"cross-sidecar staleness: {len(lags)} stale reads of {result.reads}; "
        f"p50 {percentile(ms, 0.5):.0f} ms, p90 {percentile(ms, 0.9):.0f} ms, max {ms[-1]:.0f} ms"
    )


def text(result: Result, notes: Mapping, examples: int = 3) -> str:
    seconds = notes.get("seconds_run") or notes.get("seconds") or 0
    rate = f" ({result.operations / seconds:.0f}/s)" if seconds else ""
    lines = [
        f"schedule {notes.get('schedule')}, {seconds:.0f} s, seed {notes.get('seed')}, {notes.get('clients')} clients, "
        f"{notes.get('documents')} documents, rate asked {notes.get('rate')}/s, database {notes.get('database')}",
        f"operations: {result.operations}{rate}, reads {result.reads}; acknowledged writes: {result.acknowledged} "
        f"({result.not_met} Write-Quorum: not-met)",
    ]
    faults = notes.get("faults") or []
    lines.append(f"faults injected: {len(faults)}")
    lines += [f"  {fault}" for fault in faults]
    for name, strays in (notes.get("strays") or {}).items():
        if strays:
            lines.append(f"  proxy {name}: {len(strays)} answer(s) from CouchDB nobody asked for, first {strays[0]}")
    lines.append("violations:" if result.failed else "violations: none")
    for name, title in FAILING.items():
        lines += _listed(result, name, title, examples)
    lines.append("reported (not failures):")
    for name, title in REPORTED.items():
        lines += _listed(result, name, title, examples)
    lines.append(staleness_line(result))
    return "\n".join(lines)


def _listed(result: Result, name: str, title: str, examples: int) -> list[str]:
    found = result.violations[name]
    head = f"  {title}: {len(found)}"
    permanent = sum(v.permanent for v in found)
    if permanent:
        head += f" ({permanent} still missing at the end)"
    return [head] + [f"    - {violation.message}" for violation in found[:examples]]
