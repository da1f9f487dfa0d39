"""The history checker (tests/history/check.py) on small synthetic histories: a clean one
passes, and each check catches the violation it is meant to catch (and only that one)."""

from __future__ import annotations

from history.check import FAILING, REPORTED, check
from history.record import CREATE, DELETE, PATCH, READ, WRITE, Final, Op, Version, load, save
from history.report import percentile, text


class History:
    """Builds ops one after another: each takes one time unit unless told otherwise."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.clock = 0.0

    def add(self, kind: str, doc: str = "d", *, at: float | None = None, took: float = 1.0, **fields) -> Op:
        invoked = self.clock if at is None else at
        fields.setdefault("client", "c1")
        fields.setdefault("sidecar", "A")
        made = Op(len(self.ops), kind=kind, doc=doc, invoked=invoked, completed=invoked + took, **fields)
        self.ops.append(made)
        self.clock = max(self.clock, made.completed)
        return made

    def create(self, doc: str = "d", key: str = "k1", **fields) -> Op:
        return self.add(CREATE, doc, status=201, key=key, version=Version("1-a"), **fields)

    def write(self, rev: str, parent: str, tokens: tuple[str, ...], doc: str = "d", marks=None, **fields) -> Op:
        fields.setdefault("status", 200)
        version = Version(rev, len(tokens), tokens, marks or {}) if fields["status"] == 200 else fields.pop("current")
        return self.add(WRITE, doc, if_match=parent, token=tokens[-1], version=version, **fields)

    def read(self, version: Version | None, doc: str = "d", **fields) -> Op:
        return self.add(READ, doc, status=200 if version else 404, version=version, **fields)


def chain(*tokens: str, marks=None) -> Version:
    return Version(f"{len(tokens) + 1}-{''.join(tokens) or 'a'}", len(tokens), tuple(tokens), marks or {})


def final_of(*versions: Version, doc: str = "d") -> Final:
    return Final(docs={doc: versions[-1]} if versions else {}, keys={doc: "k1"} if versions else {})


def counts(result) -> dict[str, int]:
    return {name: result.count(name) for name in (*FAILING, *REPORTED) if result.count(name)}


def test_a_clean_history_passes():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    h.read(chain("t1"), sidecar="B", client="c2")
    h.add(PATCH, status=200, mark=4, version=Version("3-p", 1, ("t1",), {"c1": 4}))
    h.write("4-t2", "3-p", ("t1", "t2"), client="c2", marks={"c1": 4})
    h.read(Version("4-t2", 2, ("t1", "t2"), {"c1": 4}), client="c3")
    h.add(READ, status=503, retry_after="1")
    result = check(h.ops, final_of(Version("4-t2", 2, ("t1", "t2"), {"c1": 4})))
    assert counts(result) == {} and not result.failed
    assert (result.operations, result.acknowledged, result.reads, result.staleness) == (7, 4, 3, [])


def test_an_acknowledged_write_missing_from_a_later_version_and_the_end_is_lost():
    """The 202 race: t1 acknowledged at quorum, then a merge keeps the racing sibling t9."""
    h = History()
    h.create()
    lost = h.write("2-t1", "1-a", ("t1",))
    h.read(Version("3-x", 1, ("t9",)), sidecar="B")
    result = check(h.ops, final_of(Version("3-x", 1, ("t9",))))
    assert counts(result) == {"lost_write": 1} and result.failed
    [violation] = result.violations["lost_write"]
    assert violation.permanent and violation.doc == "d"
    assert f"#{lost.index} PUT by c1 via A, If-Match 1-a, token t1" in violation.message
    assert "missing from 1 later version(s), first #2 GET" in violation.message and "final state" in violation.message


def test_a_write_missing_for_a_while_is_lost_though_it_is_back_at_the_end():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    h.read(Version("2-t9", 1, ("t9",)), sidecar="B")  # the sibling from the same parent, served
    result = check(h.ops, final_of(Version("3-m", 2, ("t1", "t2"))))
    [violation] = result.violations["lost_write"]
    assert not violation.permanent and "(the final state has it: 3-m" in violation.message


def test_a_write_missing_only_at_the_end_is_lost():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    result = check(h.ops, final_of(Version("2-t9", 1, ("t9",))))
    assert counts(result) == {"lost_write": 1} and result.violations["lost_write"][0].permanent


def test_a_blind_patch_missing_from_a_newer_version_is_lost():
    h = History()
    h.create()
    h.add(PATCH, status=200, mark=5, version=Version("2-p", 0, (), {"c1": 5}))
    h.read(Version("3-q", 0, (), {"c1": 3}), client="c2")  # newer, yet c1's mark went back
    result = check(h.ops, final_of(Version("3-q", 0, (), {"c1": 3})))
    assert counts(result) == {"lost_write": 1}


def test_a_stale_read_through_the_writing_sidecar_breaks_read_your_writes():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    h.read(Version("1-a"), client="c2")  # through A, which acknowledged t1: older than it
    result = check(h.ops, final_of(chain("t1")))
    assert counts(result) == {"read_your_writes": 1}
    assert "older than 1 write(s) A acknowledged before it" in result.violations["read_your_writes"][0].message


def test_a_stale_read_through_the_other_sidecar_is_measured_not_failed():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))  # completes at 2
    h.read(Version("1-a"), sidecar="B", client="c2", at=2.25)
    h.read(Version("1-a"), sidecar="B", client="c3", at=2.5)
    result = check(h.ops, final_of(chain("t1")))
    assert counts(result) == {} and result.staleness == [0.25, 0.5]
    assert "2 stale reads of 2; p50 250 ms, p90 500 ms, max 500 ms" in text(result, {"schedule": "nofaults"})


def test_a_read_overlapping_the_write_is_not_stale():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",), at=2, took=2)
    h.read(Version("1-a"), at=3)  # invoked before the write completed: either answer is right
    assert counts(check(h.ops, final_of(chain("t1")))) == {}


def test_not_met_writes_lost_are_reported_not_failed():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",), quorum="not-met")
    h.read(Version("2-t9", 1, ("t9",)))
    result = check(h.ops, final_of(Version("2-t9", 1, ("t9",))))
    assert counts(result) == {"not_met_lost": 1} and not result.failed
    assert "Write-Quorum: not-met" in result.violations["not_met_lost"][0].message


def test_two_acknowledged_writes_from_one_etag_are_a_lost_update():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    h.write("2-t2", "1-a", ("t2",), client="c2", sidecar="B")
    result = check(h.ops, final_of(Version("3-m", 2, ("t2", "t3"))))
    assert (
        result.count("lost_update") == 1
        and "2 writes acknowledged from 1-a" in result.violations["lost_update"][0].message
    )
    h.ops[-1].quorum = "not-met"
    assert check(h.ops, final_of(Version("3-m", 2, ("t2", "t3")))).count("not_met_lost_update") == 1


def test_a_write_answered_412_whose_token_shows_later_took_effect():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    h.write("", "1-a", ("t2",), status=412, current=chain("t1"), client="c2")
    h.read(Version("3-t2", 2, ("t1", "t2")), client="c3")
    result = check(h.ops, final_of(Version("3-t2", 2, ("t1", "t2"))))
    assert counts(result) == {"refused_write_took_effect": 1}
    assert "yet its token is in #3 GET by c3" in result.violations["refused_write_took_effect"][0].message


def test_a_write_answered_412_seen_only_by_a_read_overlapping_it_is_reported():
    """Its provisional leaf, read before the writer withdrew it; nothing after the 412 shows it."""
    h = History()
    h.create()
    written = h.write("2-t1", "1-a", ("t1",), took=3.0)
    refused = h.write("", "1-a", ("t2",), status=412, current=chain("t1"), client="c2", at=written.invoked, took=3.0)
    h.read(Version("2-t2", 1, ("t2",)), client="c3", at=refused.invoked + 1.0)
    h.read(chain("t1"), client="c3")
    result = check(h.ops, final_of(chain("t1")))
    assert counts(result) == {"refused_write_seen_in_flight": 1} and not result.failed
    refused.completed = refused.invoked + 0.5  # answered before that read began: it took effect
    assert counts(check(h.ops, final_of(chain("t1")))) == {"refused_write_took_effect": 1}


def test_a_delete_answered_412_seen_only_by_a_404_overlapping_it_is_reported():
    """A DELETE and a PUT from one revision, both stored below quorum: the delete lost to the
    live leaf (412), but a quorum read of the copies holding only its tombstone answered 404
    while it was in flight (a faults run on the cluster)."""
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    refused = h.add(DELETE, status=412, if_match="2-t1", version=chain("t1", "t2"), took=3.0)
    h.write("3-t2", "2-t1", ("t1", "t2"), client="c2", at=refused.invoked, quorum="not-met")
    h.read(None, client="c3", at=refused.invoked + 1.0)
    h.read(chain("t1", "t2"), client="c3")
    result = check(h.ops, final_of(chain("t1", "t2")))
    assert counts(result) == {"refused_write_seen_in_flight": 1} and not result.failed
    refused.completed = refused.invoked + 0.5  # answered before that read began: its 404 lost the writes
    assert counts(check(h.ops, final_of(chain("t1", "t2"))))["lost_write"] == 2


def test_a_412_whose_current_is_the_write_itself():
    """The undone 202 leaf still the winner where the sidecar read ``current``."""
    h = History()
    h.create()
    h.write("", "1-a", ("t1",), status=412, current=chain("t1"))
    result = check(h.ops, final_of(Version("3-x", 1, ("t7",))))
    [violation] = result.violations["refused_write_took_effect"]
    assert violation.message.endswith("yet its token is in the current it was answered with")


def test_reads_going_back_for_one_client_break_monotonic_reads():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",), sidecar="B", client="c9")
    h.read(chain("t1"), client="c2", sidecar="A")
    h.read(Version("1-a"), client="c2", sidecar="A")
    result = check(h.ops, final_of(chain("t1")))
    assert counts(result) == {"monotonic_reads": 1} and result.staleness == [1.0]


def test_a_delete_undone_is_lost_and_a_stale_read_of_the_deleted_version_is_not():
    h = History()
    h.create()
    h.add(DELETE, status=204, if_match="1-a")
    h.read(Version("1-a"), sidecar="B", client="c2")  # B has not heard yet: stale
    assert counts(check(h.ops, Final())) == {}
    h.read(Version("2-r", 0, ("t7",)), client="c3")  # a newer version after the delete: back
    result = check(h.ops, final_of(Version("2-r", 0, ("t7",))))
    assert counts(result) == {"lost_write": 1} and result.violations["lost_write"][0].permanent


def test_a_document_gone_without_a_delete_is_lost_and_with_one_it_is_not():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    h.read(None, client="c2")
    assert counts(check(h.ops, Final())) == {"lost_write": 2}  # the create and the write
    h.add(DELETE, status=None, if_match="2-t1", at=2.5, took=5, error="ServerDisconnectedError")  # maybe done
    assert counts(check(h.ops, Final())) == {}


def test_5xx_answers_must_be_503_with_retry_after():
    h = History()
    h.add(READ, status=503, retry_after="1")
    h.add(READ, status=503)
    h.add(DELETE, status=502, retry_after="1", error="couchdb_error")
    h.add(WRITE, status=500, error="internal")
    assert check(h.ops, Final()).count("bad_5xx") == 3


def test_an_idempotency_key_that_created_twice():
    h = History()
    h.create("d1", key="k")
    h.add(CREATE, "d1", status=200, key="k", version=Version("1-a"))  # a replay: the same id
    assert check(h.ops, Final(docs={"d1": Version("1-a")}, keys={"d1": "k"})).count("key_created_twice") == 0
    h.create("d2", key="k")
    assert check(h.ops, Final()).count("key_created_twice") == 1
    final = Final(docs={"d1": Version("1-a"), "d3": Version("1-b")}, keys={"d1": "k", "d3": "k"})
    assert "documents ['d1', 'd2', 'd3']" in check(h.ops, final).violations["key_created_twice"][0].message


def test_a_key_with_two_documents_and_no_met_create_is_reported_apart():
    """Claims stored below quorum in a partition: provisional, answered not-met."""
    h = History()
    h.create("d1", key="k", quorum="not-met")
    h.create("d2", key="k", quorum="not-met", sidecar="B")
    h.add(CREATE, "d1", status=200, key="k", version=Version("1-a"))  # a replay repeats a create's decision
    both = Final(docs={"d1": Version("1-a"), "d2": Version("1-a")}, keys={"d1": "k", "d2": "k"})
    assert counts(check(h.ops, both)) == {"not_met_key_twice": 1}
    h.create("d1", key="k")  # a met answer for the key: its claim is on every copy, so no other may exist
    assert counts(check(h.ops, both)) == {"key_created_twice": 1}


def test_conflicts_left_and_final_disagreements():
    final = Final(
        conflicts={"d": ["3-x"], "e": []},
        nodes={"node 1": {"d": "4-a", "e": "2-b"}, "node 2": {"d": "4-a", "e": "2-b"}, "node 3": {"d": "3-x"}},
        sidecars={"A": {"d": "4-a", "e": "2-b"}, "B": {"d": "4-a", "e": None}},
    )
    result = check([], final)
    assert counts(result) == {"conflicts_left": 1, "final_disagreement": 2}
    messages = [v.message for v in result.violations["final_disagreement"]]
    assert messages == [
        "node 3 disagrees with node 1 on 2 document(s): d: 3-x vs 4-a, e: None vs 2-b",
        "B disagrees with node 1 on 1 document(s): e: None vs 2-b",
    ]


def test_a_history_saved_and_loaded_checks_the_same(tmp_path):
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",), request_id="h-1")
    h.read(Version("3-x", 1, ("t9",), {"c1": 2}), sidecar="B")
    final = final_of(Version("3-x", 1, ("t9",), {"c1": 2}))
    final.nodes = {"node 1": {"d": "3-x"}}
    save(tmp_path / "h.jsonl", h.ops, final, {"schedule": "faults"})
    ops, loaded, notes = load(tmp_path / "h.jsonl")
    assert ops == h.ops and loaded == final and notes == {"schedule": "faults"}
    assert counts(check(ops, loaded)) == counts(check(h.ops, final)) == {"lost_write": 1}


def test_the_report_names_every_check_and_the_faults():
    h = History()
    h.create()
    h.write("2-t1", "1-a", ("t1",))
    report = text(check(h.ops, final_of(Version("2-t9", 1, ("t9",)))), {"faults": ["12.0 s kill node 3"], "seconds": 2})
    assert "operations: 2 (1/s)" in report and "acknowledged writes: 2 (0 Write-Quorum: not-met)" in report
    assert "faults injected: 1\n  12.0 s kill node 3" in report
    assert "quorum-acknowledged writes lost: 1 (1 still missing at the end)" in report
    assert all(title in report for title in (*FAILING.values(), *REPORTED.values()))
    assert percentile([1, 2, 3, 4], 0.5) == 2 and percentile([1, 2, 3, 4], 0.9) == 4 and percentile([], 0.5) == 0
