"""The outbox on its own: order, the bound (telemetry dropped before events, every drop
counted), and what survives reopening the file."""

from __future__ import annotations

from pathlib import Path

from watchkeeper.bus.outbox import EVENT, TELEMETRY, Outbox


def test_rows_come_back_in_order_and_leave_once_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=1 << 20)
    for i in range(5):
        assert box.put(f"id{i}", "wk.h.system.started", f"body{i}".encode())
    rows = box.peek(3)
    assert [r.id for r in rows] == ["id0", "id1", "id2"]
    box.remove_through(rows[1].seq)
    assert [r.id for r in box.peek(10)] == ["id2", "id3", "id4"]
    assert len(box) == 3 and box.size == 15


def test_the_bound_drops_telemetry_first_then_the_oldest_events(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=100)
    box.put("e0", "s", b"e" * 30)
    box.put("t0", "s", b"t" * 30, TELEMETRY)
    box.put("e1", "s", b"e" * 30)
    box.put("e2", "s", b"e" * 30)  # 120 > 100: the telemetry row goes
    assert [r.id for r in box.peek(10)] == ["e0", "e1", "e2"]
    assert box.dropped == {EVENT: 0, TELEMETRY: 1}
    box.put("e3", "s", b"e" * 50)  # needs 40 more: the two oldest events go
    assert [r.id for r in box.peek(10)] == ["e2", "e3"]
    assert box.dropped == {EVENT: 2, TELEMETRY: 1}
    assert box.size <= 100
    assert not box.put("huge", "s", b"x" * 101)  # never fits: refused, counted
    assert box.dropped[EVENT] == 3 and [r.id for r in box.peek(10)] == ["e2", "e3"]


def test_rows_and_drop_counts_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_bytes=50)
    for i in range(4):
        box.put(f"e{i}", "s", b"x" * 20)
    box.close()
    again = Outbox(path, max_bytes=50)
    assert [r.id for r in again.peek(10)] == ["e2", "e3"]
    assert again.size == 40 and len(again) == 2
    assert again.dropped[EVENT] == 2
