"""A recorded-history test of the sidecar on a 3-node CouchDB cluster: a workload of
clients through two sidecars (each behind a FaultProxy to its own node), a recorder of
every operation, fault schedules, and a pure checker of what was recorded (check.py).
``python -m history --help`` (from tests/) runs it; tests/server/test_history.py runs it in the suite."""
