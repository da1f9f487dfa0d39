"""The progress line of long jobs: rate and time left, on a fake clock."""

from __future__ import annotations

import io

from data_service.progress import Progress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_says_done_total_percent_rate_and_time_left():
    clock = Clock()
    progress = Progress("verify", 10_000, out=io.StringIO(), clock=clock)
    assert progress.line() == "verify: 0/10000 documents (0%)"
    clock.now += 4
    progress.done = 2_000
    assert progress.line() == "verify: 2000/10000 documents (20%), 500 docs/s, about 16 s left"


def test_the_finished_line_says_the_average_rate_and_how_long_it_took():
    clock = Clock()
    out = io.StringIO()
    progress = Progress("reencrypt", 300, out=out, clock=clock)
    clock.now += 150
    progress.done = 300
    progress.finish()
    assert out.getvalue() == "reencrypt: 300/300 documents (100%), 2 docs/s, 150.0 s\n"


def test_more_documents_than_counted_at_the_start_leave_no_negative_time():
    clock = Clock()
    progress = Progress("migrate", 10, out=io.StringIO(), clock=clock)
    clock.now += 1
    progress.done = 12
    assert progress.line() == "migrate: 12/10 documents (120%), 12 docs/s"


def test_without_a_total_the_line_has_no_percent_nor_time_left():
    clock = Clock()
    progress = Progress("reconcile", 0, out=io.StringIO(), clock=clock)
    clock.now += 2
    progress.done = 10
    assert progress.line() == "reconcile: 10/0 documents, 5 docs/s"


def test_durations_read_as_seconds_minutes_or_hours():
    assert [duration(s) for s in (0.4, 42, 99, 100, 3_000, 5_900, 6_000, 7_500)] == [
        "0 s",
        "42 s",
        "99 s",
        "2 min",
        "50 min",
        "98 min",
        "1 h 40 min",
        "2 h 5 min",
    ]


def test_off_a_terminal_a_line_every_few_seconds():
    clock = Clock()
    out = io.StringIO()
    progress = Progress("verify", 1_000, out=out, every=2.0, clock=clock)
    for _ in range(10):  # 100 documents a second, for 10 seconds
        clock.now += 1
        progress.advance(100)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "verify: 200/1000 documents (20%), 100 docs/s, about 8 s left",
        "verify: 400/1000 documents (40%), 100 docs/s, about 6 s left",
        "verify: 600/1000 documents (60%), 100 docs/s, about 4 s left",
        "verify: 800/1000 documents (80%), 100 docs/s, about 2 s left",
        "verify: 1000/1000 documents (100%), 100 docs/s",
        "verify: 1000/1000 documents (100%), 100 docs/s, 10.0 s",
    ]


def test_on_a_terminal_the_line_is_rewritten_in_place_and_blanked_past_its_end():
    clock = Clock()
    out = Tty()
    progress = Progress("verify", 1_000_000, out=out, clock=clock)
    clock.now += 1
    progress.advance(100_000)  # "..., about 9 s left"
    clock.now += 1
    progress.advance(800_000)
    clock.now += 1
    progress.advance(100_000)
    progress.finish()
    written = out.getvalue()
    assert "\n" not in written[:-1] and written.endswith("\n")
    shown = written.split("\r")[1:]
    assert shown[0] == "verify: 100000/1000000 documents (10%), 100000 docs/s, about 9 s left"
    assert shown[2].startswith("verify: 1000000/1000000 documents (100%), 333333 docs/s")
    assert len(shown[2]) == len(shown[1])  # padded over the longer line before it
    assert shown[3].rstrip() == "verify: 1000000/1000000 documents (100%), 333333 docs/s, 3.0 s"
