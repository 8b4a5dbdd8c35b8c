"""A Kubernetes API server fake for the ``kubernetes`` backend's tests, built on kmock.

kmock's emulator (nolar/kmock) serves discovery from declared resources and keeps the objects
it is sent. This adds what the backend relies on and kmock leaves out: server-side apply that
creates objects, label selectors and ``limit``/``continue`` pagination on lists (with an
expired-token 410 on demand), list items of built-in kinds without ``apiVersion``/``kind`` as a
real server sends them, and the 404 a real server gives for an apply into a missing namespace.
It runs on an event loop in a thread of its own, so that the synchronous client can call it.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kubernetes.client import ApiClient, Configuration

# (group/version/plural) -> (kind, namespaced): what a cluster without operators serves.
BUILTIN_RESOURCES: dict[str, tuple[str, bool]] = {
    "v1/namespaces": ("Namespace", False),
    "v1/pods": ("Pod", True),
    "v1/services": ("Service", True),
    "v1/events": ("Event", True),
    "v1/nodes": ("Node", False),
    "v1/resourcequotas": ("ResourceQuota", True),
    "apps/v1/statefulsets": ("StatefulSet", True),
    "apps/v1/deployments": ("Deployment", True),
    "batch/v1/jobs": ("Job", True),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True),
}
# The Kubeflow training operator's and the MPI operator's CRDs.
KUBEFLOW_RESOURCES: dict[str, tuple[str, bool]] = {
    "kubeflow.org/v1/pytorchjobs": ("PyTorchJob", True),
    "kubeflow.org/v1/tfjobs": ("TFJob", True),
    "kubeflow.org/v2beta1/mpijobs": ("MPIJob", True),
}
# Kueue's CRDs (the Workloads it makes for the jobs it queues).
KUEUE_RESOURCES: dict[str, tuple[str, bool]] = {
    "kueue.x-k8s.io/v1beta2/workloads": ("Workload", True),
    "kueue.x-k8s.io/v1beta2/resourceflavors": ("ResourceFlavor", False),
    "kueue.x-k8s.io/v1beta2/clusterqueues": ("ClusterQueue", False),
    "kueue.x-k8s.io/v1beta2/localqueues": ("LocalQueue", True),
}
# KAI-Scheduler's Queue.
KAI_RESOURCES: dict[str, tuple[str, bool]] = {"scheduling.run.ai/v2/queues": ("Queue", False)}
# Groups whose list items a real API server sends without apiVersion and kind.
_BUILTIN_GROUPS = frozenset({"", "apps", "batch", "autoscaling"})
_VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}


def _selects(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _is_collection(request: kmock.Request) -> bool:
    """A resource's collection, not a discovery document such as ``/api/v1``."""
    return request.resource is not None and request.resource.plural is not None


def _status(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


async def _cancelled(*tasks: asyncio.Future[Any]) -> None:
    """Cancel the tasks and wait until they are done, so that none is left pending when the
    fake's loop stops."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with server-side apply, selectors, pagination and namespace checks."""

    # Refuse applies into namespaces that were not created (as a real server does).
    enforce_namespaces: bool = True
    # How many of the next list calls that carry a continue token answer 410 Expired.
    expire_continue: int = 0
    _closing: asyncio.Event | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Above kmock's own list (a sub-priority within its fallbacks), below any test reaction.
        (self.fallback**1)[kmock.action.LIST][_is_collection] << self._list

    def served(self, resource: kmock.resource) -> bool:
        return any(r == resource for r in self._get_resources())

    def namespace_exists(self, name: str) -> bool:
        key = (kmock.resource("", "v1", "namespaces"), None, name)
        return key in self._objects and not self._objects[key].deleted

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8 parses /api/v1/namespaces as a namespace named "" and answers 500: serve the
        # creation of namespaces (the only call the backend makes there) past its URL parser.
        if raw_request.method == "POST" and raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._create_namespace(raw_request)
        return await super().__call__(raw_request)

    async def _create_namespace(
        self, raw_request: aiohttp.web.BaseRequest
    ) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        request = kmock.Request(
            id=len(self._requests),
            method=raw_request.method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            text=body.decode(),
            data=json.loads(body) if body else None,
            action=kmock.action.CREATE,
            resource=kmock.resource("", "v1", "namespaces"),
            raw_request=raw_request,
        )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as exc:  # as kmock's own __call__: errors become Status answers
            return await self._render_error(exc)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        content_type = request.headers.get("Content-Type", "")
        if (
            request.resource is not None
            and request.method == kmock.method.PATCH
            and request.name is not None
            and content_type.startswith("application/apply-patch")
        ):
            # Server-side apply creates what is missing; kmock's PATCH would 404 instead.
            if not self.served(request.resource):
                raise _status(404, "NotFound", "the server could not find the requested resource")
            if (
                self.enforce_namespaces
                and request.namespace is not None
                and not self.namespace_exists(request.namespace)
            ):
                raise _status(
                    404,
                    "NotFound",
                    f'namespaces "{request.namespace}" not found',
                    name=request.namespace,
                    kind="namespaces",
                )
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self._objects or self._objects[key].deleted:
                    self._objects[key] = request.data
        return await super()._handle(request)

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        """A watch as a real server streams it: the objects there are (as ADDED), then every
        change, with none lost in between (kmock subscribes only after sending the objects);
        only those its label selector selects; ended after ``timeoutSeconds``, and when the
        fake stops."""
        yield b""  # the headers: streaming has begun
        resource = request.resource
        bus = self._buses[resource]
        selector = request.params.get("labelSelector") or ""

        def selected(raw: Mapping[str, Any]) -> bool:
            meta = raw.get("metadata") or {}
            return (request.namespace is None or meta.get("namespace") == request.namespace) and (
                _selects(selector, meta.get("labels") or {})
            )

        async with self._lock:
            mark = await bus.mark()  # before reading: what changes from now on is streamed
            existing = [
                obj.raw
                for (res, namespace, _), obj in self._objects.items()
                if res == resource
                and not obj.deleted
                and (request.namespace is None or namespace == request.namespace)
            ]
        for raw in existing:
            if selected(raw):
                yield {"type": "ADDED", "object": raw}
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        closing = self.closing()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        stream = bus.stream(since=mark).__aiter__()
        step: asyncio.Future[Any] | None = None
        ends: asyncio.Future[Any] | None = None
        try:
            while not closing.is_set():
                step = asyncio.ensure_future(stream.__anext__())
                ends = asyncio.ensure_future(closing.wait())
                left = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(
                    {step, ends}, timeout=left, return_when="FIRST_COMPLETED"
                )
                if step not in done:
                    return
                await _cancelled(ends)
                event = step.result()
                if selected(event.get("object") or {}):
                    yield event
        except StopAsyncIteration:
            return
        finally:
            # The pending read ends before the stream closes (whatever ended this one: a
            # timeout, the fake stopping, or this handler being cancelled).
            await _cancelled(*(t for t in (step, ends) if t is not None))
            await stream.aclose()  # type: ignore[attr-defined]
            await bus.unmark(mark)

    async def publish(self, resource: kmock.resource, event: dict[str, Any]) -> None:
        await self._buses[resource].put(event)

    def closing(self) -> asyncio.Event:
        """Set when the fake stops: every watch stream ends."""
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def _list(self, request: kmock.Request) -> dict[str, Any]:
        resource = request.resource
        if resource is None or not self.served(resource):
            raise _status(404, "NotFound", "the server could not find the requested resource")
        token = request.params.get("continue")
        if token and self.expire_continue > 0:
            self.expire_continue -= 1
            raise _status(410, "Expired", "The provided continue parameter is too old")
        selector = request.params.get("labelSelector", "")
        found = []
        for (res, namespace, name), obj in self._objects.items():
            if res != resource or obj.deleted:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            raw = dict(obj.raw)
            if _selects(selector, (raw.get("metadata") or {}).get("labels") or {}):
                found.append(((namespace or "", name), raw))
        found.sort(key=lambda pair: pair[0])
        items = [raw for _, raw in found]
        start = int(base64.b64decode(token).decode()) if token else 0
        limit = int(request.params.get("limit") or 0) or len(items) or 1
        page = items[start : start + limit]
        metadata: dict[str, Any] = {"resourceVersion": "1"}
        if start + limit < len(items):
            metadata["continue"] = base64.b64encode(str(start + limit).encode()).decode()
            metadata["remainingItemCount"] = len(items) - start - limit
        if resource.group in _BUILTIN_GROUPS:
            page = [
                {k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in page
            ]
        info = self.resources[resource]
        group_version = f"{resource.group}/{resource.version}".lstrip("/")
        return {
            "apiVersion": group_version,
            "kind": f"{info.kind}List",
            "metadata": metadata,
            "items": page,
        }


class FakeKubeAPI:
    """A :class:`KubeEmulator` on ``http://127.0.0.1:<port>``, served from a background thread.

    Declare resources before use (:meth:`declare`); inspect ``handler`` (kmock's DSL: requests,
    reactions, ``objects``) once the calls under test have returned.
    """

    def __init__(self, *, kubeflow: bool = True, kueue: bool = True, kai: bool = True) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stop: asyncio.Event | None = None
        self._served: concurrent.futures.Future[None] | None = None
        self.handler: KubeEmulator = self._run(self._make_handler())
        self._clients: list[ApiClient] = []
        self.url = ""
        for resource, (kind, namespaced) in BUILTIN_RESOURCES.items():
            self.declare(resource, kind, namespaced=namespaced)
        if kubeflow:
            for resource, (kind, namespaced) in KUBEFLOW_RESOURCES.items():
                self.declare(resource, kind, namespaced=namespaced)
        if kueue:
            for resource, (kind, namespaced) in KUEUE_RESOURCES.items():
                self.declare(resource, kind, namespaced=namespaced)
        if kai:
            for resource, (kind, namespaced) in KAI_RESOURCES.items():
                self.declare(resource, kind, namespaced=namespaced)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    @staticmethod
    async def _make_handler() -> KubeEmulator:
        # Created on the server's loop: kmock binds its queues and locks to the running loop.
        return KubeEmulator()

    def start(self) -> FakeKubeAPI:
        started: asyncio.Future[str] = self._loop.create_future()

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with self.handler, kmock.Server(self.handler) as server:
                started.set_result(str(server.url).rstrip("/"))
                await self._stop.wait()

        self._served = asyncio.run_coroutine_threadsafe(serve(), self._loop)

        async def wait() -> str:
            return await started

        self.url = self._run(wait())
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()  # type: ignore[no-untyped-call]
        self._loop.call_soon_threadsafe(self.handler.closing().set)
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            if self._served is not None:
                self._served.result(timeout=10)
        self._run(self._cancel_the_rest())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @staticmethod
    async def _cancel_the_rest() -> None:
        """Whatever still runs on the fake's loop (handlers of requests in flight, kmock's
        streams) ends before the loop closes, rather than being destroyed pending."""
        current = asyncio.current_task()
        await _cancelled(*(t for t in asyncio.all_tasks() if t is not current))

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- setup ----------------------------------------------------------------------------------

    def declare(self, resource: str, kind: str, *, namespaced: bool = True) -> None:
        """Serve a resource (``group/version/plural``, or ``v1/plural``) in discovery."""
        self.handler.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=_VERBS
        )

    def undeclare(self, resource: str) -> None:
        """Stop serving a resource, as when its CRD is deleted."""
        del self.handler.resources[resource]

    def add_namespace(self, name: str) -> None:
        self.put(
            "v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )

    def put(self, resource: str, obj: Mapping[str, Any]) -> None:
        """Store an object as if a controller had created or changed it (e.g. a pod); watches
        see it."""
        meta = obj["metadata"]
        key = (resource, meta.get("namespace"), meta["name"])
        known = key in self.handler.objects
        self.handler.objects[key] = dict(obj)
        event = {"type": "MODIFIED" if known else "ADDED", "object": dict(obj)}
        self._run(self.handler.publish(kmock.resource(resource), event))

    # --- inspection -----------------------------------------------------------------------------

    def api_client(self, **settings: Any) -> ApiClient:
        configuration = Configuration(host=self.url)
        for name, value in settings.items():
            setattr(configuration, name, value)
        client = ApiClient(configuration)
        self._clients.append(client)  # closed by stop()
        return client

    def requests(self) -> list[kmock.Request]:
        return list(self.handler)

    def calls(self) -> Iterator[kmock.Request]:
        """The resource requests: everything except discovery."""
        for request in self.handler:
            if request.resource is not None and request.resource.plural is not None:
                yield request

    def stored(self, resource: str) -> dict[tuple[str | None, str], dict[str, Any]]:
        """The live objects of a resource, by (namespace, name)."""
        wanted = kmock.resource(resource)
        return {
            (ns, name): obj.raw
            for (res, ns, name), obj in self.handler.objects.items()
            if res == wanted and not obj.deleted
        }
