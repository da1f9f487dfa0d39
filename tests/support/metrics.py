"""``/_metrics`` read the one way: Prometheus text parsed by ``prometheus_client``'s parser,
never by hand."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from support import until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` (``…_total`` for a counter) whose labels
    include ``labels``; 0.0 when there is none, as for a counter never incremented."""
    return sum(
        value for (sample, have), value in samples(text).items() if sample == name and set(labels.items()) <= have
    )


async def scrape(session, base: str) -> str:
    """The text of ``base``'s ``/_metrics``."""
    async with session.get(f"{base}/_metrics") as resp:
        assert resp.status == 200, resp.status
        return await resp.text()


async def metric_of(session, base: str, name: str, **labels: str) -> float:
    """``metric`` of one scrape of ``base``."""
    return metric(await scrape(session, base), name, **labels)


async def cache_gauge(session, base: str, name: str = "live") -> float:
    """``data_service_cache_<name>`` of a one-worker sidecar."""
    return await metric_of(session, base, f"data_service_cache_{name}")


async def cache_counter(session, base: str, name: str) -> float:
    """``data_service_cache_<name>_total`` of a one-worker sidecar."""
    return await metric_of(session, base, f"data_service_cache_{name}_total")


async def cache_live(session, base: str) -> None:
    """Wait until the read cache of a one-worker sidecar follows its change feed."""

    async def check() -> bool:
        return await cache_gauge(session, base, "live") == 1.0

    await until(check, "the cache's change feed is live")
