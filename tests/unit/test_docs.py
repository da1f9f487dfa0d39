"""The documentation names only what exists (issue 26): every file, flag, metric,
problem code and anchor a page names. The README stays a front page (≤ 150 lines) that
links every ``docs/*.md`` page; those pages and bench/README.md stay within 300 lines;
docs/http-api.md lists every problem code with its status and docs/flags.md every flag.

Pages: README.md, docs/*.md and bench/README.md (whose ``--flags`` are the benchmark's
own, so only its files, metrics, codes and links are checked). What is checked:

* files: every path under a directory of this repository (``data_service/``, ``tests/``,
  ``scripts/``, ``docs/``, ``deploy/``, ``docker/``, ``examples/``, ``api_spec/``,
  ``bench/``), in prose or code; a backticked module path such as ``store/writes.py`` is
  looked up under ``data_service/`` too; ``tests/x.py::test_name`` must name a test there;
* flags: every ``--flag`` in code (backticks or a fenced block) is one of
  ``data-service``'s (the usage text in ``data_service/cli.py``), another program's listed
  in ``FOREIGN_FLAGS``, or one a page names as absent (``ABSENT_FLAGS``);
* metrics: every ``data_service_*`` name is a series ``/_metrics`` exposes (one ending in
  ``*``: a prefix of some);
* problem codes: a backticked code after a 4xx/5xx status (``503 `busy```) is in
  ``problems.TABLE``; any other backticked snake_case name is a problem code or a word of
  the repository's code (a field, parameter, function or test), or one listed in
  ``OTHER_NAMES`` (another program's, an example);
* links: every relative link resolves, and its ``#anchor`` names a heading there.

Each check is a function of a page's path and text, so ``test_each_check_catches_*``
feed it a page naming something missing and see it found.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from data_service import cli, problems
from data_service.couchdb import IdPool
from data_service.couchdb.memory import memory_couch
from data_service.keys import KeysDir
from data_service.metrics import Metrics
from data_service.protection import Keyring
from data_service.store import DocumentStore

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
BENCH = ROOT / "bench" / "README.md"
PAGES = [README, *DOCS, BENCH]
HTTP_API = ROOT / "docs" / "http-api.md"
FLAGS = ROOT / "docs" / "flags.md"
README_LINES, PAGE_LINES = 150, 300

# --flags of other programs the pages show (each with the program, so a stale entry is easy to spot)
FOREIGN_FLAGS = {
    "--base": "duplicates (the project's duplicate-code check)",
    "--cap-drop": "podman run",
    "--change": "duplicates",
    "--clients": "python -m history (tests/history)",
    "--concurrency": "bench",
    "--couchdb-script": "bench",
    "--couchdb-url": "bench",
    "--dir": "the shared CouchDB test script",
    "--examples": "python -m history (tests/history)",
    "--fill-cache": "bench",
    "--for": "kubectl wait",
    "--format": "podman build",
    "--from-file": "kubectl create secret",
    "--ignore-scripts": "npm ci",
    "--hypothesis-show-statistics": "pytest (hypothesis's plugin)",
    "--init": "podman run",
    "--keep-database": "python -m history (tests/history)",
    "--memory": "scripts/devcouch.py",
    "--meta": "openapi-python-client",
    "--name": "docker run",
    "--nodes": "the shared CouchDB test script",
    "--output-path": "openapi-python-client",
    "--path": "openapi-python-client",
    "--profile": "docker compose",
    "--pull": "podman build",
    "--rate": "python -m history (tests/history)",
    "--rm": "docker compose run",
    "--runs": "python -m history (tests/history)",
    "--schedule": "python -m history (tests/history)",
    "--seconds": "python -m history (tests/history)",
    "--strict": "tsc",
    "--token": "examples/node/notes.mjs",
    "--token-file": "examples/node/notes.mjs",
    "--wipe": "the shared CouchDB test script",
    "--workloads": "bench",
}
# flags a page names because data-service does not have them
ABSENT_FLAGS = {
    "--bogus": "docs/operations.md: a usage error's example",
    "--require-quorum": "docs/consistency.md: not built",
}
# backticked names that are neither problem codes nor words of the code (what each is)
OTHER_NAMES = {
    "deleted": "CouchDB's 404 reason",
    "doc_validation": "CouchDB's 400 error",
    "missing": "CouchDB's 404 reason",
    "no_majority": "CouchDB's 500 error",
    "not_implemented": "pouchdb-server's 501 error",
    "only_multipart_accepted": "CouchDB's 400 error",
    "process_cpu_seconds_total": "prometheus_client's process collector",
    "process_open_fds": "prometheus_client's process collector",
    "process_resident_memory_bytes": "prometheus_client's process collector",
    "process_start_time_seconds": "prometheus_client's process collector",
    "stop_grace_period": "docker compose",
    "t_stale_revision": "the OpenAPI schema of a type named t",
}
# a series name that is not a metric
NOT_METRICS = {"data_service_guard"}  # the validate_doc_update design document
# files generated by a run, never in the repository
GENERATED = {"bench/results", "bench/results/", "bench/results/latest.json"}
# named by a page before the branch that adds it is merged: remove the entry after the merge
PENDING: dict[str, str] = {}

REPO_DIRS = ("data_service", "tests", "scripts", "docs", "deploy", "docker", "examples", "api_spec", "bench")
SOURCE_DIRS = ("data_service", "tests", "scripts", "deploy", "docker", "examples", "api_spec", "bench")
REPO_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(REPO_DIRS)})/[\w./*-]*[\w/*])(?:::(\w+))?")
RATE = re.compile(r"^\w+/s$")  # "docs/s" is a rate, not a path
MODULE_PATH = re.compile(r"^(?:[a-z_]+/)+[a-z_]+\.py$")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
METRIC = re.compile(r"\bdata_service_[a-z0-9_]+\*?")  # with *: a prefix
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
STATUS_CODE = re.compile(r"\b[45]\d\d\s+`([a-z_]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
WORD = re.compile(r"\w+")


def code(body: str) -> list[str]:
    """The page's code: fenced blocks and inline spans."""
    return FENCE.findall(body) + spans(body)


def spans(body: str) -> list[str]:
    return SPAN.findall(FENCE.sub("", body))


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def lines(page: Path) -> int:
    return len(page.read_text().splitlines())


def wrong(found: dict[str, set[str]]) -> str:
    return "; ".join(f"{page}: {', '.join(sorted(names))}" for page, names in found.items() if names)


def every_page(check) -> dict[str, set[str]]:
    return {name(page): check(page, page.read_text()) for page in PAGES}


# --- the checks: each takes a page's path (for relative links) and its text ---


def missing_files(page: Path, body: str) -> set[str]:
    def missing(path: str, test: str | None) -> bool:
        if path in GENERATED or path in PENDING or RATE.match(path):
            return False
        if "*" in path:
            return not list(ROOT.glob(path))
        where = ROOT / path
        if not where.exists():
            return True
        return test is not None and not re.search(rf"^\s*(?:async )?def {test}\b", where.read_text(), re.M)

    named = {(m.group(1), m.group(2)) for m in REPO_PATH.finditer(body)}
    modules = {span for span in spans(body) if MODULE_PATH.match(span) and not REPO_PATH.match(span)}
    return {f"{p}::{t}" if t else p for p, t in named if missing(p, t)} | {
        span for span in modules if not (ROOT / span).exists() and not (ROOT / "data_service" / span).exists()
    }


def unknown_flags(page: Path, body: str) -> set[str]:
    named = {flag for block in code(body) for flag in FLAG.findall(block)}
    return named - service_flags() - set(FOREIGN_FLAGS) - set(ABSENT_FLAGS)


def unknown_metrics(series: set[str]):
    def check(page: Path, body: str) -> set[str]:
        named = set(METRIC.findall(body)) - NOT_METRICS
        return {n for n in named if not (any(s.startswith(n[:-1]) for s in series) if n.endswith("*") else n in series)}

    return check


def unknown_codes(page: Path, body: str) -> set[str]:
    table = set(codes())
    after_status = set(STATUS_CODE.findall(FENCE.sub("", body))) - table - set(OTHER_NAMES)
    snake = {span for span in spans(body) if SNAKE.match(span) and not span.startswith("data_service")}
    return after_status | (snake - table - repository_words() - set(OTHER_NAMES))


def broken_links(page: Path, body: str) -> set[str]:
    found = set()
    for target in LINK.findall(body):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve()
        if (file and not resolved.exists()) or (
            anchor
            and (not file or resolved.suffix == ".md")
            and anchor not in anchors(resolved.read_text() if file else body)
        ):
            found.add(target)
    return found


# --- what the pages are checked against ---


@cache
def service_flags() -> frozenset[str]:
    return frozenset(FLAG.findall(cli.__doc__ or ""))


def codes() -> dict[str, int]:
    return {getattr(code, "value", code): kind.status for code, kind in problems.TABLE.items()}


@cache
def repository_words() -> frozenset[str]:
    """Every word of the repository's code and configuration (not its documentation)."""
    words: set[str] = set()
    files = [path for top in SOURCE_DIRS for path in (ROOT / top).rglob("*") if path.is_file()]
    for path in [*files, ROOT / "pyproject.toml", ROOT / "Makefile"]:
        if path.suffix in {".md", ".pyc", ".png", ".ico", ".gz"} or path == Path(__file__).resolve():
            continue
        try:
            words |= set(WORD.findall(path.read_text()))
        except UnicodeDecodeError:
            continue
    return frozenset(words)


def anchors(body: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", FENCE.sub("", body), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def linked(page: Path) -> set[Path]:
    """The files ``page``'s relative links point at."""
    targets = set()
    for target in LINK.findall(page.read_text()):
        if not re.match(r"^[a-z]+:", target) and not target.startswith("#"):
            targets.add((page.parent / target.partition("#")[0]).resolve())
    return targets


@pytest.fixture
async def series(tmp_path):
    """Every series name ``/_metrics`` exposes, from a service's registry."""
    KeysDir(tmp_path).create()
    async with memory_couch() as couch:
        metrics = Metrics()
        metrics.watch(DocumentStore(couch.database("db"), IdPool(couch), Keyring(KeysDir(tmp_path), "db")))
        names = set()
        for family in metrics.registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_count", "_sum")}.get(family.type, ("",))
            names |= {family.name + suffix for suffix in suffixes}
        return names


# --- the pages ---


def test_the_readme_is_a_front_page():
    assert lines(README) <= README_LINES


def test_every_docs_page_is_under_300_lines():
    long = {name(page): lines(page) for page in [*DOCS, BENCH] if lines(page) > PAGE_LINES}
    assert not long, f"pages over {PAGE_LINES} lines: {long}"


def test_the_readme_links_every_docs_page():
    assert not [name(page) for page in DOCS if page.resolve() not in linked(README)]


def test_links_between_pages_resolve():
    found = every_page(broken_links)
    assert not any(found.values()), f"links to nothing: {wrong(found)}"


def test_named_files_exist():
    found = every_page(missing_files)
    assert not any(found.values()), f"files that do not exist: {wrong(found)}"


def test_the_pending_list_is_current():
    assert not [path for path in PENDING if (ROOT / path).exists()], "merged: remove it from PENDING"


def test_named_flags_exist():
    assert not service_flags() & (set(FOREIGN_FLAGS) | set(ABSENT_FLAGS)), "a data-service flag is listed as not one"
    found = {name(page): unknown_flags(page, page.read_text()) for page in [README, *DOCS]}
    assert not any(found.values()), f"flags data-service does not have: {wrong(found)}"


def test_the_flags_page_names_every_flag():
    named = set(FLAG.findall(FLAGS.read_text()))
    assert not service_flags() - named - {"--help", "--version"}, "docs/flags.md lacks a flag of data-service"


async def test_named_metrics_exist(series):
    assert "data_service_http_requests_total" in series
    found = every_page(unknown_metrics(series))
    assert not any(found.values()), f"metrics /_metrics does not have: {wrong(found)}"


def test_named_problem_codes_exist():
    assert not set(codes()) & set(OTHER_NAMES), "a problem code is listed as another name"
    found = every_page(unknown_codes)
    assert not any(found.values()), f"problem codes (or names) the code does not have: {wrong(found)}"


def test_the_http_api_page_lists_every_problem_code_with_its_status():
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", HTTP_API.read_text(), re.M)
    listed = {code: int(status) for status, code in rows}
    assert listed == codes()


# --- each check finds what is missing ---

PAGE = ROOT / "docs" / "a-page.md"


@pytest.mark.parametrize(
    ("check", "body", "found"),
    [
        (missing_files, "See `data_service/store/gone.py`.", {"data_service/store/gone.py"}),
        (missing_files, "See `store/gone.py`.", {"store/gone.py"}),
        (missing_files, "`tests/test_gone*.py`; 900 docs/s; `tests/unit/test_*.py`", {"tests/test_gone*.py"}),
        (missing_files, "tests/unit/test_docs.py::test_no_such_test", {"tests/unit/test_docs.py::test_no_such_test"}),
        (missing_files, "`data_service/store/writes.py`, tests/unit/test_docs.py::test_named_files_exist", set()),
        (unknown_flags, "Start it with `--no-such-flag`.", {"--no-such-flag"}),
        (unknown_flags, "```sh\ndata-service serve --no-such-flag\n```", {"--no-such-flag"}),
        (unknown_flags, "`--keys-dir` and `--port`", set()),
        (unknown_codes, "answers 503 `no_such_code`", {"no_such_code"}),
        (unknown_codes, "the code `no_such_code_or_name`", {"no_such_code_or_name"}),
        (unknown_codes, "answers 503 `busy`; `stale_revision`, `include_docs`", set()),
        (broken_links, "[x](architecture.md#no-such-heading)", {"architecture.md#no-such-heading"}),
        (broken_links, "[x](no-such-page.md)", {"no-such-page.md"}),
        (broken_links, "# A heading\n[x](#a-heading) [y](#another)", {"#another"}),
        (broken_links, "[x](http-api.md#errors) [y](https://example.com/z.md)", set()),
    ],
)
def test_each_check_catches_a_missing_name(check, body, found):
    assert check(PAGE, body) == found


async def test_the_metric_check_catches_a_missing_series(series):
    check = unknown_metrics(series)
    assert check(PAGE, "`data_service_no_such_total`") == {"data_service_no_such_total"}
    assert check(PAGE, "`data_service_no_such_*`") == {"data_service_no_such_*"}
    assert check(PAGE, "`data_service_http_requests_total`, `data_service_cache_*`") == set()
