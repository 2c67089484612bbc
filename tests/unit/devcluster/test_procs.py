import sys
from dataclasses import replace
from pathlib import Path

from sipfleet.devcluster import procs


def me() -> procs.ProcessRecord:
    return procs.this_process("me")


def test_a_record_matches_only_the_same_process() -> None:
    record = me()
    assert procs.is_alive(record)
    assert not procs.is_alive(replace(record, start_time=record.start_time + 1))
    assert not procs.is_alive(replace(record, argv=[sys.executable, "something-else"]))


def test_stop_never_signals_a_recycled_pid() -> None:
    recycled = replace(me(), start_time=me().start_time - 1)
    assert procs.stop(recycled, timeout=0.1) is False
    assert procs.is_alive(me())  # still here


def test_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "x.json"
    procs.save(me(), path)
    assert procs.load(path) == me()
    path.write_text("{not json")
    assert procs.load(path) is None
    assert procs.load(tmp_path / "missing.json") is None


def test_tail_reads_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert procs.tail(log, 2) == ["line 98", "line 99"]
    assert procs.tail(tmp_path / "none.log") == []
