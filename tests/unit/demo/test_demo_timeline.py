"""Timeline recording and the summary the demo prints and writes."""

from __future__ import annotations

from sipfleet.demo.timeline import Mark, Timeline, mark_label


def grown_and_shrunk() -> Timeline:
    tl = Timeline()
    tl.begin(0.0, "joining")
    tl.record(0.0, {"demo-main": 1})
    tl.record(1.0, {"demo-main": 10, "demo-node-1": 0})
    tl.mark(1.0, "ScaleOut", "10 members need 1 nodes: created demo-node-1")
    tl.record(2.0, {"demo-main": 10, "demo-node-1": 6, "demo-node-2": 2})
    tl.begin(2.5, "leaving")
    tl.mark(3.0, "ScaleIn", "drain demo-node-2 (2 members): scale in to 1")
    tl.mark(3.0, "Transfer", "move 2 members demo-node-2 -> demo-main")
    tl.record(3.0, {"demo-main": 7, "demo-node-1": 3})
    tl.mark(4.0, "NodeDeleted", "delete demo-node-2: drained and empty")
    tl.record(4.0, {"demo-main": 0})
    return tl


def test_summary_counts_peaks_servers_and_events() -> None:
    s = grown_and_shrunk().summary()
    assert s.duration == 4.0
    assert s.peak_members == 18
    assert s.peak_servers == 3
    assert s.servers_seen == ("demo-main", "demo-node-1", "demo-node-2")
    assert s.final_servers == 1
    assert (s.scale_outs, s.scale_ins, s.nodes_deleted, s.transfer_events) == (1, 1, 1, 1)
    assert s.scaled_out and s.scaled_back_in


def test_no_scale_in_without_a_deleted_node() -> None:
    tl = Timeline()
    tl.record(0.0, {"demo-main": 10, "demo-node-1": 5})
    tl.record(1.0, {"demo-main": 3})  # fewer servers answered, but nothing was deleted
    s = tl.summary()
    assert s.scaled_out
    assert not s.scaled_back_in


def test_one_server_is_not_a_scale_out() -> None:
    tl = Timeline()
    tl.record(0.0, {"demo-main": 4})
    assert not tl.summary().scaled_out
    assert not tl.summary().scaled_back_in


def test_empty_timeline_summary() -> None:
    s = Timeline().summary()
    assert (s.duration, s.peak_members, s.peak_servers, s.final_servers) == (0.0, 0, 0, 0)
    assert s.servers_seen == ()


def test_series_is_zero_where_a_server_did_not_host_the_group() -> None:
    tl = grown_and_shrunk()
    assert tl.times() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert tl.series("demo-node-2") == [0, 0, 2, 0, 0]
    assert tl.series("demo-main") == [1, 10, 10, 7, 0]


def test_recording_copies_the_counts() -> None:
    tl = Timeline()
    counts = {"demo-main": 1}
    tl.record(0.0, counts)
    counts["demo-main"] = 99
    assert tl.samples[0].members == {"demo-main": 1}


def test_act_spans_end_where_the_next_act_begins() -> None:
    assert grown_and_shrunk().act_spans() == [(0.0, 2.5, "joining"), (2.5, 4.0, "leaving")]
    assert Timeline().act_spans() == []


def test_mark_labels_name_the_nodes() -> None:
    assert mark_label(Mark(0, "ScaleOut", "x: created demo-node-1, demo-node-2")) == (
        "+node-1, +node-2"
    )
    assert mark_label(Mark(0, "ScaleIn", "drain demo-node-4 (0 members): scale in")) == (
        "drain node-4"
    )
    assert mark_label(Mark(0, "NodeDeleted", "delete demo-node-4: demo-node-4 empty")) == "-node-4"
    assert mark_label(Mark(0, "Transfer", "move 2 members demo-node-2 -> demo-node-3")) == (
        "REFER from node-2"
    )
    assert mark_label(Mark(0, "ScaleOut", "no node named")) == "ScaleOut"
    assert mark_label(Mark(0, "ReconcileFailed", "demo-node-1 broke")) == "ReconcileFailed"
