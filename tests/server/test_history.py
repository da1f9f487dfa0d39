"""The recorded-history test on the 3-node cluster (marker ``cluster``: ``make test-cluster``):
two sidecars (two workers each) on nodes 1 and 2 behind fault-injecting proxies, 8 clients,
about ``$HISTORY_SECONDS`` (default 45) per schedule on ``$HISTORY_DOCUMENTS`` documents (default
20), then every check of tests/history/check.py.
``python -m history`` (from tests/, or ``make history``) runs the same for longer and repeatedly."""

from __future__ import annotations

import os

import pytest
from history.report import text
from history.run import run_once
from history.schedule import SCHEDULES
from support import CouchScript

pytestmark = [pytest.mark.cluster, pytest.mark.history]

SECONDS = float(os.environ.get("HISTORY_SECONDS", "45"))
DOCUMENTS = int(os.environ.get("HISTORY_DOCUMENTS", "20"))  # fewer: more writes race on each


@pytest.mark.parametrize("schedule", ["nofaults", "faults"])
async def test_no_acknowledged_write_is_lost(schedule, tmp_path):
    script = CouchScript(os.environ["COUCHDB_CLUSTER_DIR"])
    outcome = await run_once(schedule, SECONDS, script, tmp_path, seed=1, documents=DOCUMENTS)
    report = text(outcome.result, outcome.notes, examples=5)
    print(report)
    assert outcome.result.acknowledged >= 2 * SECONDS, report  # the workload ran (a floor for a loaded machine)
    assert len(outcome.notes["faults"]) == len(SCHEDULES[schedule]), report
    if outcome.result.failed:
        pytest.fail(report, pytrace=False)
