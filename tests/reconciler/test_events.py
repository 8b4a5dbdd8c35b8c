"""Cluster events as the workload's timeline keeps them."""

from __future__ import annotations

from app.reconciler.events import changed_events, seen_key, timeline_events


def _event(uid: str | None, **fields: object) -> dict[str, object]:
    return {
        "metadata": {"name": "p.1", "namespace": "ns", "uid": uid},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns"},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        **fields,
    }


def test_events_read_oldest_first_with_their_count_and_times() -> None:
    later = _event(
        "b", firstTimestamp="2026-01-01T00:05:00Z", count=4, lastTimestamp="2026-01-01T00:09:00Z"
    )
    # events.k8s.io-style: the repeats are in a series.
    series = _event(
        "a",
        eventTime="2026-01-01T00:01:00Z",
        series={"count": 7, "lastObservedTime": "2026-01-01T00:08:00Z"},
    )
    rows = timeline_events([later, series, _event(None)])
    assert [(r["uid"], r["count"], r["first_seen"], r["last_seen"]) for r in rows] == [
        ("a", 7, "2026-01-01T00:01:00Z", "2026-01-01T00:08:00Z"),
        ("b", 4, "2026-01-01T00:05:00Z", "2026-01-01T00:09:00Z"),
    ]
    assert rows[0]["involved_object"] == {"kind": "Pod", "name": "p"}


def test_only_new_or_repeated_events_are_written_again() -> None:
    rows = timeline_events([_event("a", count=1), _event("b", count=1)])
    seen = {r["uid"]: seen_key(r) for r in rows}
    assert changed_events(rows, seen) == []
    again = timeline_events([_event("a", count=2), _event("b", count=1)])
    assert [r["uid"] for r in changed_events(again, seen)] == ["a"]
