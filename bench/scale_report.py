"""The scale benchmark's report: Markdown tables, and SVG charts when matplotlib is
installed (the ``bench`` extra: ``pip install -e '.[bench]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .measure import machine_line
from .scale_steps import DEEP

READS = ("get", "equality page", "between page", f"page {DEEP} deep")


def markdown(report: dict[str, Any]) -> str:
    sizes = report.get("sizes", [])
    config = report["config"]
    out = [
        f"Machine: {machine_line(report['machine'])}",
        f"CouchDB: {config['couchdb']}; {config['concurrency']} bulks of {config['bulk']} at once; sidecar "
        f"--workers={config['workers']} --cache-size={config['cache_size']} "
        f"--warm-interval={config['warm_interval']:g}; "
        f"{config['requests']} requests per read workload and side at one connection (past the read cache).",
        "",
        "| documents | sidecar fill docs/s | direct `_bulk_docs` docs/s | ratio | first query s | all indexes "
        "current s | direct first query s | `verify` docs/s | sidecar RSS / max MiB |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in sizes:
        side, direct, mem = row["fill"], row["direct_fill"], row["sidecar_memory"]
        out.append(
            f"| {row['documents']:,} | {side['docs_per_s']:,.0f} | {direct['docs_per_s']:,.0f} | "
            f"{side['docs_per_s'] / direct['docs_per_s']:.2f} | {row['after_fill']['first_query_s']:.2f} | "
            f"{row['after_fill']['all_current_s']:.2f} | {row['direct_after_fill']['first_query_s']:.2f} | "
            f"{row['verify']['docs_per_s']:,.0f} | {mem['rss_mib']:.1f} / {mem['rss_max_mib']:.1f} |"
        )
    out += ["", "p50 / p99 ms at one connection, sidecar (direct):", ""]
    out += ["| documents | " + " | ".join(READS) + " |", "|--:|" + "--:|" * len(READS)]
    for row in sizes:
        cells = []
        for name in READS:
            side, direct = row["reads"][name]["sidecar"], row["reads"][name]["direct"]
            cells.append(
                f"{side['p50_ms']:.2f} / {side['p99_ms']:.2f} ({direct['p50_ms']:.2f} / {direct['p99_ms']:.2f})"
            )
        out.append(f"| {row['documents']:,} | " + " | ".join(cells) + " |")
    if jobs := report.get("jobs"):
        fill = sizes[-1]["fill"]["docs_per_s"]
        out += [
            "",
            f"Jobs on the {sizes[-1]['documents']:,} documents (fill rate at that size {fill:,.0f} docs/s):",
            "",
        ]
        for name, done in jobs.items():
            out.append(
                f"- `{name}`: {done['documents']:,} documents in {done['seconds']:.1f} s, {done['docs_per_s']:,.0f} "
                f"docs/s = {done['docs_per_s'] / fill:.0%} of the fill rate (exit {done['exit']})"
            )
    if warmer := report.get("warmer"):
        off = next((row["fill"]["docs_per_s"] for row in warmer if not row["warm_interval"]), None)
        out += ["", "The index warmer, the same fill into fresh databases:", ""]
        out += [
            "| warmer | documents | fill docs/s | against no warmer | first query s | all indexes current s |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        for row in warmer:
            state = "off" if not row["warm_interval"] else f"every {row['warm_interval']:g} s"
            against = f"{row['fill']['docs_per_s'] / off:.0%}" if off else "-"
            out.append(
                f"| {state} | {row['fill']['documents']:,} | {row['fill']['docs_per_s']:,.0f} | {against} | "
                f"{row['first_query_s']:.2f} | {row['all_current_s']:.2f} |"
            )
    start, end = report["machine"]["loadavg_at_start"], report.get("loadavg_at_end")
    memory = report.get("sidecar_memory_at_start", {})
    out += [
        "",
        f"Sidecar RSS at start {memory.get('rss_mib', 0):.1f} MiB. Load average (1/5/15 min) at start {start}, at end "
        f"{end}: client, sidecar and CouchDB share the machine; anything else running skews the numbers.",
    ]
    return "\n".join(out)


def charts(report: dict[str, Any], out: Path) -> str:
    """Three SVGs in ``out``; what was written (or why not)."""
    try:
        import matplotlib

        matplotlib.use("svg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "scale: no charts (matplotlib missing: pip install -e '.[bench]')"
    sizes = report.get("sizes", [])
    if not sizes:
        return "scale: no charts (no size was measured)"
    plt.rcParams.update({"figure.figsize": (8, 4.5), "font.size": 9, "svg.hashsalt": "scale"})
    written = [_versus(plt, sizes[-1], out / "scale-sidecar-vs-direct.svg")]
    written.append(_latency(plt, sizes, out / "scale-latency.svg"))
    written.append(_throughput(plt, sizes, report.get("jobs"), out / "scale-throughput.svg"))
    return "scale: charts " + ", ".join(str(path) for path in written)


def _versus(plt: Any, row: dict, path: Path) -> Path:
    """Sidecar against direct at the largest size: p50 of each read, and the fill rate."""
    fig, (reads, fills) = plt.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    x = range(len(READS))
    for offset, side in ((-0.2, "direct"), (0.2, "sidecar")):
        reads.bar([i + offset for i in x], [row["reads"][n][side]["p50_ms"] for n in READS], 0.4, label=side)
    reads.set_xticks(list(x), [name.replace(" ", "\n", 1) for name in READS])
    reads.set_ylabel("p50 ms, one connection")
    reads.legend()
    fills.bar(["direct", "sidecar"], [row["direct_fill"]["docs_per_s"], row["fill"]["docs_per_s"]], color=["C0", "C1"])
    fills.set_ylabel("bulk fill docs/s")
    fig.suptitle(f"Sidecar vs direct CouchDB at {row['documents']:,} documents")
    return _save(plt, fig, path)


def _latency(plt: Any, sizes: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots()
    docs = [row["documents"] for row in sizes]
    for i, name in enumerate(READS):
        for side, style in (("sidecar", "-"), ("direct", "--")):
            ax.plot(
                docs,
                [row["reads"][name][side]["p50_ms"] for row in sizes],
                style,
                color=f"C{i}",
                marker="o",
                label=f"{name} ({side})",
            )
    ax.set_xscale("log")
    ax.set_xlabel("documents in the database")
    ax.set_ylabel("p50 ms, one connection")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Latency against database size")
    return _save(plt, fig, path)


def _throughput(plt: Any, sizes: list[dict], jobs: dict | None, path: Path) -> Path:
    fig, (rates, memory) = plt.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    docs = [row["documents"] for row in sizes]
    series = {"sidecar fill": ("fill",), "direct _bulk_docs": ("direct_fill",), "verify": ("verify",)}
    for label, (key,) in series.items():
        rates.plot(docs, [row[key]["docs_per_s"] for row in sizes], marker="o", label=label)
    for name, done in (jobs or {}).items():
        rates.plot([docs[-1]], [done["docs_per_s"]], marker="s", linestyle="", label=name)
    rates.set_xscale("log")
    rates.set_xlabel("documents in the database")
    rates.set_ylabel("documents/s")
    rates.legend(fontsize=7)
    memory.plot(docs, [row["sidecar_memory"]["rss_max_mib"] for row in sizes], marker="o", color="C4")
    memory.set_xscale("log")
    memory.set_ylim(bottom=0)
    memory.set_xlabel("documents in the database")
    memory.set_ylabel("sidecar RSS, max MiB")
    fig.suptitle("Throughput and memory against database size")
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path
