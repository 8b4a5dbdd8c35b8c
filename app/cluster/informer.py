"""List, then watch: one kind's objects kept current in memory by the API server's watch stream.

The pattern of client-go's reflector and kopf's watchers (STYLE.md §12): list the objects (with
a label selector, page by page), then watch from the list's ``resourceVersion`` with bookmarks
on. A watch the server ends (its ``timeoutSeconds``) is resumed from the last version seen. A
connection error or a stalled stream (nothing at all, not even a bookmark, for longer than the
watch should last) means back off, then resume from that version; a 410 Gone (that version was
compacted away, as after a long pause) means list again. From a failure until a watch is
established again, the cache is known to be stale and says so (:attr:`Informer.stale`), so
that nobody works from it.

The stream itself is the ``kubernetes`` client's :class:`kubernetes.watch.Watch`, without
models: objects stay the dicts the API server sent.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch import Watch

log = logging.getLogger("runplane.cluster.informer")

Manifest = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
# list(resource_version_hint) -> (items, resourceVersion of the list); raises on failure
Lister = Callable[[], tuple[list[Manifest], str]]
# What Watch.stream calls: the kind's list function, with watch=True and the watch options.
WatchFunc = Callable[..., Any]


class Gone(Exception):
    """The resource version to watch from is too old (410): list again."""


class NotServed(Exception):
    """The API server does not serve the kind (no CRD): nothing to watch, ask again later."""


class Informer:
    """One kind's objects in a dict the reconciler reads, kept current by a thread.

    ``on_change(before, after)`` is called (in the informer's thread) for every object that
    appears, changes or goes, with its old and new version (None where there is none), and
    for every object of a relist whose version differs from what the cache held.
    """

    def __init__(
        self,
        name: str,
        *,
        lister: Lister,
        watch_func: WatchFunc,
        on_change: Callable[[Manifest | None, Manifest | None], None],
        watch_seconds: float = 300,
        stall_seconds: float | None = None,
        backoff_max: float = 10,
        selector: str | None = None,
        recheck_missing: float = 30,
        keep: Callable[[Manifest], bool] | None = None,
    ) -> None:
        self.name = name
        self._lister = lister
        self._watch_func = watch_func
        self._on_change = on_change
        self.watch_seconds = watch_seconds
        # A stream that stays silent longer than the watch should last has stalled.
        self.stall_seconds = stall_seconds or watch_seconds + 30
        self.backoff_max = backoff_max
        self.selector = selector
        self.recheck_missing = recheck_missing
        # Objects a selector cannot tell apart (Events carry no labels) are filtered here, so
        # that the cache holds only what its reader wants.
        self._keep = keep
        self.objects: dict[Key, Manifest] = {}
        self.resource_version: str | None = None
        self.lists = 0  # how many times it listed (the first time, and after every failure)
        self.error: str | None = "not listed yet"
        self._synced = threading.Event()
        self._watch: Watch | None = None
        self._lock = threading.Lock()

    # --- what readers see -------------------------------------------------------------------

    @property
    def stale(self) -> str | None:
        """Why the cache is not to be trusted now, or None when it follows the API server."""
        return None if self._synced.is_set() else (self.error or "listing")

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def snapshot(self) -> list[Manifest]:
        with self._lock:
            return list(self.objects.values())

    # --- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop``; whatever fails, back off and carry on."""
        backoff = 1.0
        listed = False
        while not stop.is_set():
            try:
                if not listed:
                    self._relist()
                    listed = True
                self._watch_once()
                backoff = 1.0
            except NotServed:
                # Nothing of it can exist: an empty cache is the truth until it is served.
                self._replace([], None)
                listed = False
                stop.wait(self.recheck_missing)
            except Gone:
                log.info("%s: the watch's version is gone; listing again", self.name)
                self._synced.clear()
                self.error = "listing again after 410 Gone"
                listed = False
            except Exception as exc:  # connection refused, a stalled stream, a 5xx...
                if stop.is_set():
                    return  # stop() broke the stream on purpose
                text = str(exc).splitlines()[0] if str(exc) else ""
                self.error = f"{type(exc).__name__}: {text}"
                self._synced.clear()
                log.warning("%s: %s; trying again in %.0f s", self.name, self.error, backoff)
                stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.backoff_max)

    def stop(self) -> None:
        """End the stream in progress (the thread ends once ``stop`` of :meth:`run` is set)."""
        watch = self._watch
        if watch is not None:
            watch.stop()  # type: ignore[no-untyped-call]
            response = getattr(watch, "_resp", None)
            if response is not None:
                try:
                    response.shutdown()  # wake the read the thread is blocked in
                except Exception:
                    pass

    def _relist(self) -> None:
        items, version = self._lister()
        self.lists += 1
        self._replace(items, version)

    def _replace(self, items: list[Manifest], version: str | None) -> None:
        keep = self._keep
        fresh = {_key(item): item for item in items if keep is None or keep(item)}
        with self._lock:
            before = self.objects
            self.objects = fresh
            self.resource_version = version
        for key in before.keys() | fresh.keys():
            old, new = before.get(key), fresh.get(key)
            if old is None or new is None or _version(old) != _version(new) or old != new:
                self._on_change(old, new)
        self.error = None
        self._synced.set()

    def _watch_once(self) -> None:
        """One watch request, until the server ends it (``timeoutSeconds``)."""
        # return_type "object": events stay plain dicts. (``deserialize=False`` would skip that
        # JSON round trip, but then the client fails on an ERROR event, a 410 among them.)
        watch = self._watch = Watch(return_type="object")  # type: ignore[no-untyped-call]
        kwargs: dict[str, Any] = {
            "resource_version": self.resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": int(self.watch_seconds),
            "_request_timeout": (10, self.stall_seconds),
        }
        if self.selector:
            kwargs["label_selector"] = self.selector
        try:
            stream = watch.stream(self._established, **kwargs)  # type: ignore[no-untyped-call]
            for event in stream:
                self._apply(event)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone() from exc
            raise
        finally:
            self._watch = None

    def _established(self, **kwargs: Any) -> Any:
        """The watch request: once the API server has answered it, the cache follows again."""
        response = self._watch_func(**kwargs)
        if getattr(response, "status", 200) == 200:
            self.error = None
            self._synced.set()
        return response

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object")
        if not isinstance(obj, dict):
            return
        version = _version(obj)
        if kind == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        key = _key(obj)
        if self._keep is not None and kind in ("ADDED", "MODIFIED") and not self._keep(obj):
            with self._lock:  # not (or no longer) of interest: as good as gone
                dropped = self.objects.pop(key, None)
                self.resource_version = version or self.resource_version
            if dropped is not None:
                self._on_change(dropped, None)
            return
        with self._lock:
            old = self.objects.get(key)
            if kind == "DELETED":
                self.objects.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self.objects[key] = obj
            else:
                return
            self.resource_version = version or self.resource_version
        if old is None and kind == "DELETED":
            return  # never kept (e.g. left out by ``keep``): nothing changes for the reader
        self._on_change(old, None if kind == "DELETED" else obj)


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _version(obj: Mapping[str, Any] | None) -> str | None:
    if obj is None:
        return None
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version is not None else None


def run_all(informers: Iterable[Informer], stop: threading.Event) -> list[threading.Thread]:
    """Start a daemon thread per informer."""
    threads = []
    for informer in informers:
        thread = threading.Thread(
            target=informer.run, args=(stop,), name=f"informer {informer.name}", daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads
