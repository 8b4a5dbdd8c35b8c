"""The cluster's events about a workload, as its timeline keeps them: pure, no I/O.

:func:`timeline_events` turns core/v1 Events (as the API server or the simulated cluster shows
them) into the rows the workload's timeline stores beside its phase transitions, each marked
``source: kubernetes``; :func:`changed_events` keeps only what is new or has changed since the
last write (an event that repeats is one row whose count grows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ClusterEvent = dict[str, Any]
# What a stored event's row is compared by: an event that repeats changes its count and last
# time (and the kubelet rewrites the message of some, such as a back-off's duration).
Seen = tuple[int, str | None, str]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def timeline_event(event: Mapping[str, Any]) -> ClusterEvent | None:
    """One event as a timeline row, or None for one without a uid (nothing to key it by)."""
    meta = _mapping(event.get("metadata"))
    uid = meta.get("uid")
    if not uid:
        return None
    series = _mapping(event.get("series"))
    first = event.get("firstTimestamp") or event.get("eventTime") or meta.get("creationTimestamp")
    last = series.get("lastObservedTime") or event.get("lastTimestamp") or first
    involved = _mapping(event.get("involvedObject"))
    return {
        "uid": str(uid),
        "type": str(event.get("type") or "Normal"),
        "reason": str(event.get("reason") or "")[:128],
        "message": str(event.get("message") or ""),
        "count": int(series.get("count") or event.get("count") or 1),
        "first_seen": first,
        "last_seen": last,
        "involved_object": {
            "kind": str(involved.get("kind") or ""),
            "name": str(involved.get("name") or ""),
        },
    }


def timeline_events(events: Sequence[Mapping[str, Any]]) -> list[ClusterEvent]:
    """Every event with a uid, oldest first (by when it was first seen)."""
    rows = [row for row in map(timeline_event, events) if row is not None]
    return sorted(rows, key=lambda r: (str(r["first_seen"] or ""), r["uid"]))


def changed_events(rows: Sequence[ClusterEvent], seen: Mapping[str, Seen]) -> list[ClusterEvent]:
    """The rows not yet written as they are now."""
    return [r for r in rows if seen.get(r["uid"]) != seen_key(r)]


def seen_key(row: ClusterEvent) -> Seen:
    return row["count"], row["last_seen"], row["message"]
