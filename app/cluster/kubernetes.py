"""The ``kubernetes`` cluster backend (SPEC §7): server-side apply, delete, one list per kind.

It speaks to the API server through the official client's ``ApiClient`` at the HTTP level, with
paths built from the table of the kinds the renderers emit (:data:`app.domain.kinds.MANAGED`), reads
responses as raw JSON (no model deserialisation), and throttles itself with a token bucket,
since the Python client has no client-side rate limit. :data:`REQUIRED_PERMISSIONS` is every
(API group, resource, verb) it uses; ``deploy/rbac.yaml`` grants exactly that.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

import orjson
import urllib3

# The client ships py.typed but leaves some functions unannotated: hence a few type: ignores.
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, load_incluster_config, load_kube_config

from app.cluster.backend import (
    FIELD_MANAGER,
    ClusterError,
    ClusterUnreachable,
    KindNotInstalled,
    Manifest,
    ObjectRef,
    ObjectRejected,
    Observation,
    Observed,
)
from app.cluster.informer import Informer, NotServed, run_all
from app.domain import kinds
from app.domain.kinds import Kind
from app.domain.labels import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MANAGED_SELECTOR,
    PROJECT_LABEL,
    WORKLOAD_ID_LABEL,
)

log = logging.getLogger("runplane.cluster.kubernetes")

APPLY_CONTENT_TYPE: Final = "application/apply-patch+yaml"
PropagationPolicy = Literal["Foreground", "Background"]


def _group_version_path(kind: Kind) -> str:
    return "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"


def _collection_path(kind: Kind, namespace: str | None = None) -> str:
    """The collection URL: in one namespace, or across all of them when ``None``."""
    base = _group_version_path(kind)
    if namespace is None or not kind.namespaced:
        return f"{base}/{kind.plural}"
    return f"{base}/namespaces/{quote(namespace, safe='')}/{kind.plural}"


def _object_path(kind: Kind, namespace: str | None, name: str) -> str:
    return f"{_collection_path(kind, namespace)}/{quote(name, safe='')}"


# What observe() lists and then watches, one informer per kind: the managed kinds, then their
# pods (which carry the workload labels from the pod templates), by the managed-by label. An
# unknown kind is refused before any call, so that no permission outside REQUIRED_PERMISSIONS is
# ever needed.
OBSERVED_KINDS: Final[tuple[Kind, ...]] = (*kinds.MANAGED, kinds.POD, *kinds.PROJECT_KINDS)
# Watched whole, as nothing of them carries Runplane's labels: the Nodes (node pools), and
# Kueue's Workloads, matched to the jobs they queue by their owner's uid.
CLUSTER_KINDS: Final[tuple[Kind, ...]] = (kinds.NODE, kinds.KUEUE_WORKLOAD)
# And the cluster's events about those objects and pods, watched once the objects are cached
# (events carry no labels: the informer keeps the namespaces Runplane's objects are in).
WATCHED_KINDS: Final[tuple[Kind, ...]] = (*OBSERVED_KINDS, *CLUSTER_KINDS, kinds.EVENT)
# Each watch holds a connection for as long as it lasts; the rest serve applies, lists and log
# streams. (The client's default is five per CPU: on two, fewer than the watches, and urllib3
# then drops and reopens connections, with a warning each time.)
CONNECTION_POOL_SIZE: Final = len(WATCHED_KINDS) + 8

# Server-side apply needs "patch", and also "create" when the object does not exist yet (the API
# server authorizes that create separately). observe() needs "list" and "watch" (never "get");
# delete() needs "delete". Discovery (/api, /apis/...) is open to every authenticated user through
# the built-in system:discovery role, so it needs no rule.
Permission = tuple[str, str, str]  # (API group, resource, verb)
REQUIRED_PERMISSIONS: Final[frozenset[Permission]] = frozenset(
    {
        (k.group, k.plural, verb)
        for k in (*kinds.MANAGED, *kinds.PROJECT_KINDS)
        for verb in ("create", "patch", "delete")
    }
    | {(k.group, k.plural, verb) for k in WATCHED_KINDS for verb in ("list", "watch")}
    # Stopping and resuming a job Kueue queues: its Workload's spec.active.
    | {(kinds.KUEUE_WORKLOAD.group, kinds.KUEUE_WORKLOAD.plural, "patch")}
)
# Only with create_namespaces=True: a POST that tolerates 409, so no "get" is needed either.
NAMESPACE_PERMISSIONS: Final[frozenset[Permission]] = frozenset({("", "namespaces", "create")})


def required_permissions(*, create_namespaces: bool) -> frozenset[Permission]:
    """Every (group, resource, verb) a backend with this setting may call."""
    return REQUIRED_PERMISSIONS | (NAMESPACE_PERMISSIONS if create_namespaces else frozenset())


class TokenBucket:
    """Client-side rate limit in the manner of client-go's: ``qps`` a second, ``burst`` at once.

    Each call reserves a token, even one not yet refilled, and sleeps until it is due, so that
    concurrent callers queue fairly instead of polling.
    """

    def __init__(
        self,
        *,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not qps > 0 or qps == float("inf"):
            raise ValueError("qps must be a positive number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; answer how long that took."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass(frozen=True, slots=True)
class _Discovered:
    """One group-version's discovery answer: the served (plural, kind) pairs, None if absent."""

    at: float
    resources: frozenset[tuple[str, str]] | None

    def serves(self, kind: Kind) -> bool:
        return self.resources is not None and (kind.plural, kind.kind) in self.resources


def _status(data: bytes) -> dict[str, Any]:
    """The API server's Status object from an error body, or {} when it is not one."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _message(status: int, data: bytes) -> str:
    body = _status(data)
    message = body.get("message")
    if isinstance(message, str) and message:
        return message
    # Not a Status (e.g. "404 page not found" from an unknown group, or a proxy's error page).
    text = data.decode("utf-8", "replace").strip()
    return text[:300] or f"HTTP {status}"


def _is_missing_namespace(data: bytes) -> bool:
    details = _status(data).get("details") or {}
    return isinstance(details, dict) and details.get("kind") == "namespaces"


def _is_namespace_terminating(data: bytes) -> bool:
    details = _status(data).get("details") or {}
    causes = details.get("causes") if isinstance(details, dict) else None
    return any(
        isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes or ()
    )


# Statuses that say nothing against the object: retry later. 401 is a credentials problem of the
# deployment; 409 (no field conflicts with force=true, but "being deleted" and the like) passes;
# a 404 or 410 that reaches here was not explained by a missing kind, namespace or list snapshot.
_RETRYABLE: Final = frozenset({401, 404, 408, 409, 410, 425, 429})


def _json(data: bytes, *, what: str) -> dict[str, Any]:
    """A successful answer's body; anything but a JSON object (a proxy's page?) is an error."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ClusterError(f"{what}: the answer is not JSON: {data[:200]!r}") from exc
    if not isinstance(parsed, dict):
        raise ClusterError(f"{what}: the answer is not a JSON object: {data[:200]!r}")
    return parsed


def _error(status: int, data: bytes, *, what: str) -> ClusterError:
    """The exception for a failed call: rejected (retrying will not help) or a cluster error."""
    message = _message(status, data)
    if status >= 500 or status in _RETRYABLE or _is_namespace_terminating(data):
        return ClusterError(f"{what}: the API server answered {status}: {message}")
    if 400 <= status < 500:
        return ObjectRejected(f"{what}: {message}")
    return ClusterError(f"{what}: unexpected answer {status}: {message}")


class KubernetesBackend:
    """A real cluster, through its API server. Idempotent calls; one list per kind to observe.

    Deletion uses ``propagationPolicy: Foreground`` by default: the object stays visible, marked
    for deletion, until the garbage collector has removed its pods (and ReplicaSets), so the
    workload reads ``Deleting`` until its pods are really gone, and a new workload of the same
    name waits for them (the reconciler holds back names still in use) instead of racing them,
    which matters for a StatefulSet, whose pod names are fixed. ``Background`` frees the name at
    once and leaves the pods to the garbage collector.

    Meant for one caller at a time (the reconciler); the rate limit is shared and thread-safe.
    """

    name = "kubernetes"

    def __init__(
        self,
        *,
        api_client: ApiClient | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        create_namespaces: bool = False,
        qps: float = 50,
        burst: int = 100,
        request_timeout: float = 10,
        page_size: int = 500,
        propagation_policy: PropagationPolicy = "Foreground",
        missing_kind_ttl: float = 30.0,
        watch_seconds: float = 300.0,
        stall_seconds: float | None = None,
        sync_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Use ``api_client``, or build one from kubeconfig (``KUBECONFIG`` or ~/.kube/config).

        ``page_size`` bounds each list call (``limit``/``continue``); ``missing_kind_ttl`` is how
        long a kind found missing stays so before discovery is asked again (an operator may be
        installed at any time). ``watch_seconds`` is how long each watch request lasts before
        the API server ends it and it is resumed, ``stall_seconds`` how long a silent stream is
        trusted (default: 30 s more); ``sync_timeout`` how long :meth:`observe` waits for a
        cache that is listing before it says the cluster is unreachable.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._owns_client = api_client is None
        self.api_client: ApiClient = (
            api_client if api_client is not None else _kubeconfig_client(kubeconfig, context)
        )
        self.create_namespaces = create_namespaces
        self.request_timeout = request_timeout
        self.page_size = page_size
        self.propagation_policy: PropagationPolicy = propagation_policy
        self.missing_kind_ttl = missing_kind_ttl
        self.permissions = required_permissions(create_namespaces=create_namespaces)
        self._clock = clock
        self._bucket = TokenBucket(qps=qps, burst=burst, clock=clock, sleep=sleep)
        self._discovery: dict[str, _Discovered] = {}
        # Namespaces known to exist (created or found): one POST per namespace per process.
        self._namespaces: set[str] = set()
        self.watch_seconds = watch_seconds
        self.stall_seconds = stall_seconds
        self.sync_timeout = sync_timeout
        # The watched cache: one informer per kind, and what they hold grouped by workload id.
        # A workload's entry is replaced, never changed in place, so a reader's copy of the
        # index (observe) stays as it was.
        self._informers: dict[Kind, Informer] = {}
        self._index: dict[str, _Entry] = {}
        # Kueue's Workloads by the uid of the job they queue, and which workload owns each of
        # the managed objects' uids: a Kueue Workload joins its job's workload when observed.
        self._queued: dict[str, Manifest] = {}
        self._owner_of_uid: dict[str, str] = {}
        self._memo: dict[str, _Memo] = {}
        # The projects' own objects, by project label ("" for what they share).
        self._projects: dict[str, dict[tuple[str, str, str], Manifest]] = {}
        self._changed: set[str] = set()
        self._index_lock = threading.Lock()
        self._stop = threading.Event()
        self._lists_seen = 0
        self._observed = False
        self._wake: Callable[[], None] | None = None
        # The cluster's events, by workload: an event names the object it is about, so each
        # object's and pod's workload is remembered (by kind, namespace, name), and the events
        # informer keeps only the namespaces Runplane's objects live in (events carry no labels).
        self._owners: dict[tuple[str, str, str], str] = {}
        self._event_namespaces: set[str] = set()
        self._events: dict[str, dict[tuple[str, str], Manifest]] = {}
        self._unowned: dict[tuple[str, str], Manifest] = {}

    @classmethod
    def from_environment(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        create_namespaces: bool = False,
        qps: float = 50,
        burst: int = 100,
        request_timeout: float = 10,
        watch_seconds: float = 300.0,
    ) -> KubernetesBackend:
        """The service account's in-cluster config inside a pod, else kubeconfig.

        An explicit ``kubeconfig`` or ``context`` is used first.
        """
        backend = cls(
            api_client=environment_client(kubeconfig=kubeconfig, context=context),
            create_namespaces=create_namespaces,
            qps=qps,
            burst=burst,
            request_timeout=request_timeout,
            watch_seconds=watch_seconds,
        )
        backend._owns_client = True
        return backend

    def close(self) -> None:
        """Stop watching, and release the connection pool of a client this backend built."""
        self._stop.set()
        for informer in self._informers.values():
            informer.stop()
        if self._owns_client:
            self.api_client.close()  # type: ignore[no-untyped-call]

    # --- the protocol ---------------------------------------------------------------------------

    def apply(self, *, workload_id: str, namespace: str, manifests: Sequence[Manifest]) -> None:
        # Check every object before the first call, so that a workload whose operator is missing
        # leaves nothing half-applied behind (e.g. the Service of a PyTorchJob).
        kinds = [self._managed_kind(m, workload_id=workload_id) for m in manifests]
        for kind in dict.fromkeys(kinds):
            if not self._served(kind):
                raise KindNotInstalled(kind)
        if self.create_namespaces:
            self._ensure_namespace(namespace)
        self._event_namespaces.add(namespace)
        for kind, manifest in zip(kinds, manifests, strict=True):
            self._apply_one(kind, namespace, manifest)

    def delete(self, *, workload_id: str, namespace: str, objects: Sequence[ObjectRef]) -> None:
        self._delete(objects, namespace=namespace)

    def set_queue_active(self, *, workload_id: str, namespace: str, active: bool) -> None:
        with self._index_lock:
            objects, _ = self._index.get(workload_id, _EMPTY_ENTRY)
            uids = [str((o.get("metadata") or {}).get("uid")) for o in objects.values()]
            queued = next((self._queued[u] for u in uids if u in self._queued), None)
        if queued is None:
            raise ClusterError("waiting for Kueue to make the job's Workload")
        meta = queued.get("metadata") or {}
        name, where = str(meta.get("name")), str(meta.get("namespace") or namespace)
        body = {
            "apiVersion": kinds.KUEUE_WORKLOAD.api_version,
            "kind": kinds.KUEUE_WORKLOAD.kind,
            "metadata": {"name": name, "namespace": where},
            "spec": {"active": active},
        }
        what = f"{'resume' if active else 'stop'} Kueue Workload {where}/{name}"
        status, data = self._call(
            "PATCH",
            _object_path(kinds.KUEUE_WORKLOAD, where, name),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=body,
            content_type=APPLY_CONTENT_TYPE,
            what=what,
        )
        if not 200 <= status < 300:
            raise _error(status, data, what=what)

    def apply_project(self, *, project: str, manifests: Sequence[Manifest]) -> None:
        found = [self._project_kind(m, project=project) for m in manifests]
        for needed in dict.fromkeys(k for k in found if k is not None):
            if not self._served(needed):
                raise KindNotInstalled(needed)
        for kind, manifest in zip(found, manifests, strict=True):
            if kind is None:  # the namespace: created if this backend may, never changed
                if self.create_namespaces:
                    self._ensure_namespace(manifest["metadata"]["name"])
                continue
            self._apply_one(kind, manifest["metadata"].get("namespace") or "", manifest)

    def delete_project_objects(self, *, project: str, objects: Sequence[ObjectRef]) -> None:
        self._delete(objects, namespace=None)

    def _delete(self, objects: Sequence[ObjectRef], *, namespace: str | None) -> None:
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": self.propagation_policy,
        }
        for ref in objects:
            kind = kinds.lookup(ref.api_version, ref.kind)
            if kind is None or kind is kinds.NAMESPACE:
                raise ObjectRejected(
                    f"{ref.kind} ({ref.api_version}) is not a kind Runplane deletes"
                )
            if not self._served(kind):
                continue  # nothing of a kind the cluster does not serve can exist
            where = ref.namespace or namespace
            what = f"delete {ref.kind} {where + '/' if where else ''}{ref.name}"
            status, data = self._call(
                "DELETE",
                _object_path(kind, where, ref.name),
                body=options,
                content_type="application/json",
                what=what,
            )
            # 404: gone already, or its namespace is; either way the desired state holds.
            if status == 404 or 200 <= status < 300:
                continue
            raise _error(status, data, what=what)

    def observe(self) -> Observation:
        """Every managed object and pod, from the watched cache: no call to the API server once
        the informers have listed. Raises :class:`ClusterUnreachable` while a cache is known to
        be stale (its watch failed and it has not listed again yet)."""
        self._start()
        deadline = self._clock() + self.sync_timeout
        # Events only inform: a cache of them that lags (or is forbidden) holds up nothing.
        watched = [i for k, i in self._informers.items() if k is not kinds.EVENT]
        for informer in watched:
            informer.wait_synced(max(0.0, deadline - self._clock()))
        stale = {i.name: i.stale for i in watched if i.stale}
        if stale:
            names = ", ".join(sorted(stale))
            raise ClusterUnreachable(
                f"the watched cache of {names} does not follow the API server: "
                f"{next(iter(stale.values()))}"
            )
        self._start_events()
        if len(self._memo) > len(self._index):
            self._memo = {k: v for k, v in self._memo.items() if k in self._index}
        with self._index_lock:
            self._adopt_events()
            index = dict(self._index)
            events = dict(self._events)
            queued = dict(self._queued)
            projects = {owner: list(objs.values()) for owner, objs in self._projects.items()}
            changed = self._changed
            self._changed = set()
        lists = sum(i.lists for i in self._informers.values())
        calls, self._lists_seen = lists - self._lists_seen, lists
        first, self._observed = not self._observed, True
        return Observation(
            workloads=_Snapshot(index, queued, events, self._memo),
            list_calls=calls,
            changed=None if first else frozenset(changed),
            nodes=self._informers[kinds.NODE].snapshot(),
            projects=projects,
        )

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever a watched object changes (the reconciler then cycles early)."""
        self._wake = wake

    @property
    def informers(self) -> Mapping[Kind, Informer]:
        """The informer of each watched kind (once :meth:`observe` has started them)."""
        return self._informers

    def _start(self) -> None:
        if self._informers:
            return
        for kind in (*OBSERVED_KINDS, *CLUSTER_KINDS):
            managed = kind not in CLUSTER_KINDS
            on_change = {
                kinds.NODE: self._changed_node,
                kinds.KUEUE_WORKLOAD: self._changed_queued,
            }.get(kind)
            if on_change is None:
                handler = (
                    self._changed_project if kind in kinds.PROJECT_KINDS else (self._changed_object)
                )
                on_change = functools.partial(handler, kind)
            self._informers[kind] = Informer(
                kind.plural,
                lister=functools.partial(
                    self._list, kind, selector=MANAGED_SELECTOR if managed else None
                ),
                watch_func=self._watch_func(kind),
                on_change=on_change,
                watch_seconds=self.watch_seconds,
                stall_seconds=self.stall_seconds,
                selector=MANAGED_SELECTOR if managed else None,
                recheck_missing=self.missing_kind_ttl,
            )
        run_all(self._informers.values(), self._stop)

    def _start_events(self) -> None:
        """Watch the cluster's events once the managed objects are cached: their namespaces are
        what the events informer keeps."""
        if kinds.EVENT in self._informers:
            return
        informer = self._informers[kinds.EVENT] = Informer(
            kinds.EVENT.plural,
            lister=functools.partial(self._list, kinds.EVENT, selector=None),
            watch_func=self._watch_func(kinds.EVENT),
            on_change=self._changed_event,
            watch_seconds=self.watch_seconds,
            stall_seconds=self.stall_seconds,
            recheck_missing=self.missing_kind_ttl,
            keep=lambda event: _namespace(event) in self._event_namespaces,
        )
        run_all([informer], self._stop)
        informer.wait_synced(self.sync_timeout)

    def _event_owner(self, event: Manifest) -> str | None:
        """The workload an event is about, if its object is one of a workload's (a Deployment's
        ReplicaSet counts as the Deployment: it reports the pods it cannot create)."""
        involved = event.get("involvedObject") or {}
        kind, name = str(involved.get("kind") or ""), str(involved.get("name") or "")
        namespace = str(involved.get("namespace") or _namespace(event))
        owner = self._owners.get((kind, namespace, name))
        if owner is None and kind == "ReplicaSet":
            owner = self._owners.get(("Deployment", namespace, name.rpartition("-")[0]))
        return owner

    def _changed_event(self, before: Manifest | None, after: Manifest | None) -> None:
        """Keep the events by workload (in the informer's thread)."""
        event = after or before
        assert event is not None
        key = (_namespace(event), str((event.get("metadata") or {}).get("name") or ""))
        with self._index_lock:
            self._unowned.pop(key, None)
            owner = self._event_owner(event)
            if owner is None:
                if after is not None:  # its object may not be cached yet: try again later
                    self._unowned[key] = after
                return
            events = dict(self._events.get(owner) or {})
            if after is None:
                events.pop(key, None)
            else:
                events[key] = after
            self._events[owner] = events
            self._changed.add(owner)
        if self._wake is not None:
            self._wake()

    def _adopt_events(self) -> None:
        """File the events that arrived before their object (called under the index lock)."""
        for key, event in list(self._unowned.items()):
            owner = self._event_owner(event)
            if owner is not None:
                del self._unowned[key]
                self._events[owner] = {**(self._events.get(owner) or {}), key: event}
                self._changed.add(owner)

    def _changed_project(self, kind: Kind, before: Manifest | None, after: Manifest | None) -> None:
        with self._index_lock:
            for obj, present in ((before, False), (after, True)):
                if obj is None:
                    continue
                meta = obj.get("metadata") or {}
                owner = str((meta.get("labels") or {}).get(PROJECT_LABEL) or "")
                key = (kind.kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                objects = self._projects.setdefault(owner, {})
                if present:
                    obj.setdefault("apiVersion", kind.api_version)
                    obj.setdefault("kind", kind.kind)
                    objects[key] = obj
                else:
                    objects.pop(key, None)
                    if not objects:
                        del self._projects[owner]
        if self._wake is not None:
            self._wake()

    def _changed_node(self, before: Manifest | None, after: Manifest | None) -> None:
        if self._wake is not None:
            self._wake()

    def _changed_queued(self, before: Manifest | None, after: Manifest | None) -> None:
        """Keep Kueue's Workloads by the uid of the job each queues (in the informer's thread)."""
        with self._index_lock:
            for owner in _owner_uids(before):
                if self._queued.get(owner) is before:
                    del self._queued[owner]
            if after is not None:
                for owner in _owner_uids(after):
                    self._queued[owner] = after
            for owner in {*_owner_uids(before), *_owner_uids(after)}:
                workload_id = self._owner_of_uid.get(owner)
                if workload_id is not None:
                    self._changed.add(workload_id)
        if self._wake is not None:
            self._wake()

    def _changed_object(self, kind: Kind, before: Manifest | None, after: Manifest | None) -> None:
        """Keep the by-workload index in step with an informer (in the informer's thread)."""
        ids = {_workload_of(before), _workload_of(after)} - {None}
        with self._index_lock:
            for workload_id in ids:
                assert workload_id is not None
                objects, pods = self._index.get(workload_id, _EMPTY_ENTRY)
                objects, pods = dict(objects), dict(pods)
                for obj, present in ((before, False), (after, True)):
                    if obj is None or _workload_of(obj) != workload_id:
                        continue
                    meta = obj.get("metadata") or {}
                    name = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                    if present:
                        self._owners[(kind.kind, *name)] = workload_id
                        self._event_namespaces.add(name[0])
                    else:
                        self._owners.pop((kind.kind, *name), None)
                    if kind is kinds.POD:
                        if present:
                            pods[name] = obj
                        else:
                            pods.pop(name, None)
                    elif present:
                        obj.setdefault("apiVersion", kind.api_version)
                        obj.setdefault("kind", kind.kind)
                        objects[(kind.kind, *name)] = obj
                        if uid := meta.get("uid"):
                            self._owner_of_uid[str(uid)] = workload_id
                    else:
                        objects.pop((kind.kind, *name), None)
                        if uid := meta.get("uid"):
                            self._owner_of_uid.pop(str(uid), None)
                if objects or pods:
                    self._index[workload_id] = (objects, pods)
                else:
                    self._index.pop(workload_id, None)
                    self._events.pop(workload_id, None)
                self._changed.add(workload_id)
        if self._wake is not None:
            self._wake()

    def _watch_func(self, kind: Kind) -> Callable[..., Any]:
        """The client's list function of the kind, which :class:`kubernetes.watch.Watch` calls
        with ``watch=True``: the typed one for core kinds, the custom-objects one for the rest
        (which answers plain dicts, and serves built-in groups as well)."""
        if kind.group == "":
            core = CoreV1Api(self.api_client)
            by_plural: dict[str, Callable[..., Any]] = {
                "pods": core.list_pod_for_all_namespaces,
                "services": core.list_service_for_all_namespaces,
                "events": core.list_event_for_all_namespaces,
                "nodes": core.list_node,
                "resourcequotas": core.list_resource_quota_for_all_namespaces,
            }
            found = by_plural[kind.plural]
            return found
        group, version = kind.api_version.split("/")
        custom = CustomObjectsApi(self.api_client)
        return functools.partial(custom.list_cluster_custom_object, group, version, kind.plural)

    # --- apply ----------------------------------------------------------------------------------

    def _managed_kind(self, manifest: Manifest, *, workload_id: str) -> Kind:
        api_version, kind_name = manifest.get("apiVersion"), manifest.get("kind")
        metadata = manifest.get("metadata") or {}
        name = metadata.get("name")
        kind = kinds.lookup(str(api_version), str(kind_name))
        if kind is None:
            raise ObjectRejected(f"{kind_name} ({api_version}) is not a kind Runplane manages")
        if not name:
            raise ObjectRejected(f"a {kind_name} without metadata.name")
        # An object without these labels would be invisible to observe() for ever.
        labels = metadata.get("labels") or {}
        if (
            labels.get(MANAGED_BY_LABEL) != MANAGED_BY
            or labels.get(WORKLOAD_ID_LABEL) != workload_id
        ):
            raise ObjectRejected(
                f"{kind_name} {name} lacks the labels {MANAGED_SELECTOR} and "
                f"{WORKLOAD_ID_LABEL}={workload_id}"
            )
        return kind

    def _project_kind(self, manifest: Manifest, *, project: str) -> Kind | None:
        """The kind of one of a project's objects (None: its Namespace), once its labels are
        checked: an object without them would be invisible to observe() for ever."""
        kind = kinds.lookup(str(manifest.get("apiVersion")), str(manifest.get("kind")))
        metadata = manifest.get("metadata") or {}
        if kind is kinds.NAMESPACE:
            return None
        if kind is None or kind not in kinds.PROJECT_KINDS:
            raise ObjectRejected(
                f"{manifest.get('kind')} ({manifest.get('apiVersion')}) is not a project's object"
            )
        labels = metadata.get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or labels.get(PROJECT_LABEL, "") != project:
            raise ObjectRejected(
                f"{kind.kind} {metadata.get('name')} lacks the labels {MANAGED_SELECTOR} and "
                f"{PROJECT_LABEL}={project}"
            )
        return kind

    def _apply_one(self, kind: Kind, namespace: str, manifest: Manifest) -> None:
        metadata = dict(manifest["metadata"])
        if kind.namespaced:
            metadata.setdefault("namespace", namespace)
        body = {**manifest, "metadata": metadata}
        name = metadata["name"]
        what = f"apply {kind.kind} {namespace + '/' if kind.namespaced else ''}{name}"
        path = _object_path(kind, namespace, name)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        for attempt in (1, 2):
            status, data = self._call(
                "PATCH", path, query=query, body=body, content_type=APPLY_CONTENT_TYPE, what=what
            )
            if 200 <= status < 300:
                return
            if status != 404:
                raise _error(status, data, what=what)
            if _is_missing_namespace(data):
                self._namespaces.discard(namespace)
                if not self.create_namespaces:
                    # Rejected rather than retried: a ClusterError would hold up every other
                    # workload behind this one in the reconciler's outbox.
                    raise ObjectRejected(
                        f"{what}: namespace {namespace} does not exist, and Runplane may not "
                        "create namespaces (RUNPLANE_KUBE_CREATE_NAMESPACES=false)"
                    )
                if attempt == 1:  # deleted behind our back since we created it: once more
                    self._ensure_namespace(namespace)
                    continue
                raise _error(status, data, what=what)
            # Server-side apply creates missing objects, so a 404 means the resource itself is
            # not served (CRD removed since discovery), unless discovery still lists it.
            self._forget(kind)
            if not self._served(kind):
                raise KindNotInstalled(kind)
            raise _error(status, data, what=what)

    def _ensure_namespace(self, namespace: str) -> None:
        if namespace in self._namespaces:
            return
        what = f"create namespace {namespace}"
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        }
        status, data = self._call(
            "POST",
            _collection_path(kinds.NAMESPACE),
            body=body,
            content_type="application/json",
            what=what,
        )
        # 409: it exists already (ours or an administrator's, which we leave unlabelled).
        if not (200 <= status < 300 or status == 409):
            raise _error(status, data, what=what)
        if status != 409:
            log.info("created namespace %s", namespace)
        self._namespaces.add(namespace)

    # --- observe --------------------------------------------------------------------------------

    def _list(
        self, kind: Kind, *, selector: str | None = MANAGED_SELECTOR
    ) -> tuple[list[Manifest], str]:
        """Every object of a kind across namespaces that ``selector`` selects (None: all), page
        by page, and the list's resourceVersion (to watch from). Raises :class:`NotServed` for a
        kind the cluster does not serve. A continue token that expired (410: the snapshot was
        compacted away) restarts the list."""
        what = f"list {kind.plural}"
        if not self._served(kind):
            raise NotServed(kind.key)
        for _ in range(3):
            items: list[Manifest] = []
            token: str | None = None
            while True:
                query = [("limit", str(self.page_size))]
                if selector:
                    query.append(("labelSelector", selector))
                if token:
                    query.append(("continue", token))
                status, data = self._call("GET", _collection_path(kind), query=query, what=what)
                if status == 410 and token:
                    break  # relist from the start
                if status == 404:
                    # A collection never 404s while its resource is served: the CRD is gone.
                    self._forget(kind)
                    if self._served(kind):
                        raise _error(status, data, what=what)
                    raise NotServed(kind.key)
                if not 200 <= status < 300:
                    raise _error(status, data, what=what)
                page = _json(data, what=what)
                for item in page.get("items") or ():
                    # List items of built-in kinds come without apiVersion and kind (the list
                    # names them once); status derivation and callers look objects up by kind.
                    item.setdefault("apiVersion", kind.api_version)
                    item.setdefault("kind", kind.kind)
                    items.append(item)
                meta = page.get("metadata") or {}
                token = meta.get("continue") or None
                if token is None:
                    return items, str(meta.get("resourceVersion") or "")
        raise ClusterError(f"{what}: the list kept expiring before it could be read to its end")

    # --- discovery ------------------------------------------------------------------------------

    def _served(self, kind: Kind) -> bool:
        """Whether the API server serves the kind, from its group-version's discovery document.

        A kind found is remembered until a call for it 404s; a kind missing (or its whole
        group-version) for ``missing_kind_ttl`` seconds, so that installing an operator or one
        more CRD is noticed soon after.
        """
        found = self._discovery.get(kind.api_version)
        if found is None or (
            not found.serves(kind) and self._clock() - found.at >= self.missing_kind_ttl
        ):
            found = self._discover(kind)
            self._discovery[kind.api_version] = found
        return found.serves(kind)

    def _forget(self, kind: Kind) -> None:
        self._discovery.pop(kind.api_version, None)

    def _discover(self, kind: Kind) -> _Discovered:
        what = f"discover {kind.api_version}"
        status, data = self._call("GET", _group_version_path(kind), what=what)
        now = self._clock()
        if status == 404:
            log.info("the cluster does not serve %s", kind.api_version)
            return _Discovered(now, None)
        if not 200 <= status < 300:
            raise _error(status, data, what=what)
        resources = frozenset(
            (r["name"], r["kind"])
            for r in _json(data, what=what).get("resources") or ()
            if "/" not in r.get("name", "/")  # subresources such as pods/status
        )
        return _Discovered(now, resources)

    # --- HTTP -----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        """One rate-limited request; answers the status and the raw body.

        The client's generated API methods would deserialise every list into model objects; the
        raw body costs one orjson parse. Transport failures become :class:`ClusterError`.
        """
        self._bucket.acquire()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, _, _ = self.api_client.param_serialize(
                method,
                path,
                query_params=list(query),
                header_params=headers,
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(
                method, url, headers, body=body, _request_timeout=self.request_timeout
            )
            try:
                data: bytes = response.read()  # type: ignore[no-untyped-call]
            finally:
                response.response.release_conn()
        except (urllib3.exceptions.HTTPError, ApiException, ConfigException, OSError) as exc:
            host = self.api_client.configuration.host
            raise ClusterUnreachable(
                f"{what}: cannot reach the Kubernetes API at {host}: {exc}"
            ) from exc
        return int(response.status), data


# A workload's objects (by kind, namespace, name) and pods (by namespace, name).
_Entry = tuple[dict[tuple[str, str, str], Manifest], dict[tuple[str, str], Manifest]]
_EMPTY_ENTRY: _Entry = ({}, {})
_NO_EVENTS: Mapping[tuple[str, str], Manifest] = {}
# What a workload's Observed was made from (its entry, Kueue Workloads and events), and it.
_Memo = tuple[_Entry, tuple[Manifest, ...], Mapping[tuple[str, str], Manifest], Observed]


def _workload_of(obj: Mapping[str, Any] | None) -> str | None:
    if obj is None:
        return None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    workload_id = labels.get(WORKLOAD_ID_LABEL)
    return str(workload_id) if workload_id else None


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _owner_uids(obj: Mapping[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    owners = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return [str(o["uid"]) for o in owners if isinstance(o, dict) and o.get("uid")]


class _Snapshot(Mapping[str, Observed]):
    """The cache as it was when observed, by workload id; each :class:`Observed` is made when it
    is looked at, so that a cycle pays only for the workloads it reads, with the Kueue Workload
    that queues one of its objects among its objects, and the cluster's events about them.
    While a workload's entry, Kueue Workloads and events are the same, the same
    :class:`Observed` is handed out (``memo``), so readers can tell what changed by identity."""

    def __init__(
        self,
        index: dict[str, _Entry],
        queued: dict[str, Manifest],
        events: Mapping[str, Mapping[tuple[str, str], Manifest]],
        memo: dict[str, _Memo],
    ) -> None:
        self._index = index
        self._queued = queued
        self._events = events
        self._memo = memo

    def __getitem__(self, workload_id: str) -> Observed:
        entry = self._index[workload_id]
        objects, pods = entry
        extra = tuple(
            q
            for o in objects.values()
            if (q := self._queued.get(str((o.get("metadata") or {}).get("uid")))) is not None
        )
        events = self._events.get(workload_id) or _NO_EVENTS
        kept = self._memo.get(workload_id)
        if (
            kept is not None
            and kept[0] is entry
            and kept[2] is events
            and len(kept[1]) == len(extra)
            and all(a is b for a, b in zip(kept[1], extra, strict=True))
        ):
            return kept[3]
        observed = Observed(
            objects=[*objects.values(), *extra],
            pods=list(pods.values()),
            events=list(events.values()),
        )
        self._memo[workload_id] = (entry, extra, events, observed)
        return observed

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def environment_client(*, kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """The service account's in-cluster config inside a pod, else kubeconfig (an explicit
    ``kubeconfig`` or ``context`` first). Raises :class:`ClusterError` when there is neither."""
    if kubeconfig is None and context is None:
        configuration = sized(Configuration())
        try:
            # Refreshes the projected service-account token, which expires.
            load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration, try_refresh_token=True
            )
            return ApiClient(configuration)
        except ConfigException:
            pass
    return _kubeconfig_client(kubeconfig, context)


def sized(configuration: Configuration) -> Configuration:
    """``configuration`` with a connection pool large enough for every watch at once."""
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize, CONNECTION_POOL_SIZE
    )
    return configuration


def _kubeconfig_client(kubeconfig: str | None, context: str | None) -> ApiClient:
    # Read KUBECONFIG now: the client's default was fixed when it was imported. Like kubectl's,
    # it may list several files (merged).
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    configuration = sized(Configuration())
    try:
        # persist_config=False: never write refreshed credentials back into the user's file.
        load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError) as exc:
        raise ClusterError(
            "no Kubernetes configuration: not running in a pod, and no usable kubeconfig "
            f"({path}): {exc}"
        ) from exc
    return ApiClient(configuration)
