"""The informer's list-then-watch loop against scripted API server answers: events applied in
order, bookmarks, a 410 that means list again, a failure that makes the cache stale until the
next list, and a kind that is not served."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from app.cluster.informer import Informer, NotServed


def obj(name: str, version: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version}, **extra}


class Response:
    """What the client's list function answers with ``watch=True``: a stream of lines."""

    status = 200

    def __init__(self, events: list[dict[str, Any]], then: BaseException | None) -> None:
        self.lines = [json.dumps(e).encode() + b"\n" for e in events]
        self.then = then

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.lines
        if self.then is not None:
            raise self.then

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Server:
    """Scripted answers: each list and each watch request takes the next script entry."""

    def __init__(self) -> None:
        self.lists: list[tuple[list[dict[str, Any]], str] | BaseException] = []
        self.watches: list[tuple[list[dict[str, Any]], BaseException | None]] = []
        self.watched_from: list[str | None] = []
        self.changes: list[tuple[str | None, str | None]] = []
        self.idle = threading.Event()

    def lister(self) -> tuple[list[dict[str, Any]], str]:
        if not self.lists:
            self.idle.set()
            time.sleep(0.05)
            raise ConnectionError("script ended")
        answer = self.lists.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def watch(self, **kwargs: Any) -> Response:
        assert kwargs["watch"] is True
        assert kwargs["allow_watch_bookmarks"] is True
        self.watched_from.append(kwargs["resource_version"])
        if not self.watches:
            self.idle.set()
            time.sleep(0.05)
            return Response([], ConnectionError("script ended"))
        events, then = self.watches.pop(0)
        return Response(events, then)

    def on_change(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        self.changes.append(
            (
                None if before is None else before["metadata"]["resourceVersion"],
                None if after is None else after["metadata"]["resourceVersion"],
            )
        )


def run(server: Server, **options: Any) -> Informer:
    informer = Informer(
        "things",
        lister=server.lister,
        watch_func=server.watch,
        on_change=server.on_change,
        backoff_max=0.01,
        **options,
    )
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,), daemon=True)
    thread.start()
    assert server.idle.wait(5), "the script never ran out"
    stop.set()
    thread.join(5)
    return informer


def test_it_lists_then_applies_the_watched_events_in_order() -> None:
    server = Server()
    server.lists = [([obj("a", "1"), obj("b", "2")], "10")]
    server.watches = [
        (
            [
                {"type": "MODIFIED", "object": obj("a", "11")},
                {"type": "ADDED", "object": obj("c", "12")},
                {"type": "DELETED", "object": obj("b", "13")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
            ],
            None,  # the server ends the watch (its timeoutSeconds)
        ),
        ([{"type": "MODIFIED", "object": obj("c", "21")}], None),
    ]
    informer = run(server)
    # Resumed from the last version seen, a bookmark's included, without listing again.
    assert server.watched_from[:3] == ["10", "20", "21"]
    assert sorted(o["metadata"]["name"] for o in informer.snapshot()) == ["a", "c"]
    assert sorted(server.changes[:2], key=str) == [(None, "1"), (None, "2")]  # the list
    assert server.changes[2:] == [("1", "11"), (None, "12"), ("2", None), ("12", "21")]
    assert informer.lists == 1


def test_a_410_means_list_again_and_the_differences_are_reported() -> None:
    server = Server()
    server.lists = [
        ([obj("a", "1"), obj("b", "2")], "10"),
        ([obj("a", "1"), obj("c", "30")], "31"),  # b went and c came while nobody watched
    ]
    server.watches = [([], ApiException(status=410, reason="Expired"))]
    informer = run(server)
    assert informer.lists == 2
    assert server.watched_from[:2] == ["10", "31"]
    assert sorted(o["metadata"]["name"] for o in informer.snapshot()) == ["a", "c"]
    # The relist reports what changed, and only that (a is as it was).
    assert sorted(server.changes[2:], key=str) == sorted([("2", None), (None, "30")], key=str)


def test_a_failed_watch_makes_the_cache_stale_until_a_watch_is_established_again() -> None:
    server = Server()
    server.lists = [([obj("a", "1")], "10")]
    server.watches = [
        ([], ConnectionError("the stream broke")),
        ([], ConnectionError("refused")),
        ([{"type": "MODIFIED", "object": obj("a", "5")}], None),
    ]
    informer = Informer(
        "things",
        lister=server.lister,
        watch_func=server.watch,
        on_change=server.on_change,
        backoff_max=0.01,
    )
    stale: list[str | None] = []
    watch = server.watch

    def watching(**kwargs: Any) -> Response:
        stale.append(informer.stale)  # what a reader saw just before each watch request
        return watch(**kwargs)

    informer._watch_func = watching  # noqa: SLF001  (watching the state between requests)
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,), daemon=True)
    thread.start()
    assert server.idle.wait(5)
    stop.set()
    thread.join(5)
    assert stale[0] is None  # listed: fresh
    assert "the stream broke" in str(stale[1])
    assert "refused" in str(stale[2])
    # Resumed from the last version seen each time, without listing again.
    assert server.watched_from[:3] == ["10", "10", "10"]
    assert informer.lists == 1
    assert [o["metadata"]["resourceVersion"] for o in informer.snapshot()] == ["5"]


def test_a_kind_that_is_not_served_is_an_empty_cache_and_is_asked_again() -> None:
    server = Server()
    server.lists = [NotServed("kubeflow.org/v1/PyTorchJob"), ([obj("a", "1")], "10")]
    informer = run(server, recheck_missing=0.05)
    assert informer.lists == 1
    assert [o["metadata"]["name"] for o in informer.snapshot()] == ["a"]


def test_an_event_of_an_unknown_type_changes_nothing() -> None:
    server = Server()
    server.lists = [([obj("a", "1")], "10")]
    server.watches = [([{"type": "SOMETHING", "object": obj("a", "99")}], None)]
    informer = run(server)
    assert [o["metadata"]["resourceVersion"] for o in informer.snapshot()] == ["1"]
    assert server.changes == [(None, "1")]


def test_the_deletion_of_an_object_it_never_kept_changes_nothing() -> None:
    """E.g. a Kubernetes event in a namespace the ``keep`` filter leaves out, deleted when its
    TTL ends: nothing to report, and the watch goes on (it used to fail and start again)."""
    server = Server()
    server.lists = [([obj("a", "1", ns="mine")], "10")]
    server.watches = [
        (
            [
                {"type": "DELETED", "object": obj("elsewhere", "11", ns="theirs")},
                {"type": "DELETED", "object": obj("never-seen", "12", ns="mine")},
                {"type": "MODIFIED", "object": obj("a", "13", ns="mine")},
            ],
            None,
        ),
    ]
    informer = run(server, keep=lambda o: o["ns"] == "mine")
    assert server.changes[:2] == [(None, "1"), ("1", "13")]
    assert server.watched_from[:2] == ["10", "13"]  # one watch, resumed: no failure between
    assert informer.lists == 1
