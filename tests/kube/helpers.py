"""Small, typed helpers for talking to the test API server with any manifest (dict).

- ``apply(api, manifest, field_manager=..., force=..., dry_run=...)``: server-side apply.
- ``server_dry_run(api, manifest)``: ``None`` if the API server would accept the manifest
  (``dryRun=All``: schema, CRD ``openAPIV3Schema``, CEL rules, admission), else its message.
- ``get``/``delete``/``list_objects`` for any kind, and ``wait_for`` to poll a condition.
- ``TcpProxy``: a forwarder in front of the API server whose connections a test can cut.

Resource paths come from API discovery on every call (cheap on a local API server, never stale
after CRDs are installed).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.client import ApiClient, ApiException, Configuration

T = TypeVar("T")

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
DEFAULT_FIELD_MANAGER = "runplane"


class UnknownKind(LookupError):
    """Discovery has no resource for this apiVersion/kind."""


def _request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str | None = None,
) -> Any:
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    req = api.param_serialize(
        method, path, query_params=query or [], header_params=headers, body=body
    )
    resp = api.call_api(*req)
    resp.read()  # type: ignore[no-untyped-call]
    text = resp.data.decode("utf-8") if resp.data else ""
    if not 200 <= resp.status <= 299:
        raise ApiException.from_response(http_resp=resp, body=text, data=None)
    return json.loads(text) if text else None


def _group_path(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def resource_for(api: ApiClient, api_version: str, kind: str) -> tuple[str, bool]:
    """(plural, namespaced) of ``kind`` in ``api_version``, from discovery."""
    try:
        listing = _request(api, "GET", _group_path(api_version))
    except ApiException as err:
        if err.status == 404:
            raise UnknownKind(f"no API group/version {api_version!r} on the server") from err
        raise
    for res in listing.get("resources", []):
        if res.get("kind") == kind and "/" not in res["name"]:
            return str(res["name"]), bool(res["namespaced"])
    raise UnknownKind(f"no kind {kind!r} in {api_version!r} on the server")


def object_path(
    api: ApiClient,
    api_version: str,
    kind: str,
    name: str | None = None,
    namespace: str | None = None,
) -> str:
    plural, namespaced = resource_for(api, api_version, kind)
    path = _group_path(api_version)
    if namespaced:
        path += f"/namespaces/{namespace or 'default'}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    return path


def _path_of(api: ApiClient, manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    if not meta.get("name"):
        raise ValueError("manifest has no metadata.name (server-side apply needs one)")
    return object_path(
        api, manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace")
    )


def apply(
    api: ApiClient,
    manifest: Mapping[str, Any],
    *,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    force: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Server-side apply ``manifest`` and return the object the server answered with.

    Raises ``ApiException`` (409 on a field-ownership conflict without ``force``, 422 on an
    invalid object) and ``UnknownKind``.
    """
    query = [("fieldManager", field_manager)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    result: dict[str, Any] = _request(
        api,
        "PATCH",
        _path_of(api, manifest),
        query=query,
        body=dict(manifest),
        content_type=APPLY_CONTENT_TYPE,
    )
    return result


def error_message(err: ApiException) -> str:
    """The API server's ``Status.message`` (else the HTTP reason) of a failed call."""
    try:
        status = json.loads(err.body or "")
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    except ValueError:
        pass
    return f"{err.status} {err.reason}: {err.body or ''}".strip()


def server_dry_run(
    api: ApiClient, manifest: Mapping[str, Any], *, field_manager: str = DEFAULT_FIELD_MANAGER
) -> str | None:
    """``None`` if the API server accepts ``manifest`` with ``dryRun=All``, else why not.

    The manifest goes through a server-side apply with ``dryRun=All`` and ``force``, so the
    whole admission chain and validation run (built-in schemas, the CRDs' ``openAPIV3Schema``
    and ``x-kubernetes-validations``) and nothing is stored. A missing namespace counts as an
    error ("namespaces ... not found"), and so does a value of the wrong type, which server-side
    apply reports as a 500 "failed to create typed patch object". Errors that are not about the
    manifest (the server unreachable, RBAC's 403, other 5xx) are raised, not returned.
    """
    try:
        apply(api, manifest, field_manager=field_manager, force=True, dry_run=True)
    except UnknownKind as err:
        return str(err)
    except ApiException as err:
        if (
            err.status in (400, 404, 409, 415, 422)
            or (err.status == 403 and _forbidden_by_admission(err))
            or (err.status == 500 and _typed_patch_error(err))
        ):
            return error_message(err)
        raise
    return None


def _typed_patch_error(err: ApiException) -> bool:
    # Server-side apply answers 500 (not 422) when a value has the wrong type for the schema,
    # e.g. "failed to create typed patch object (ns/name; kubeflow.org/v1, Kind=PyTorchJob):
    # .spec.pytorchReplicaSpecs.Master.replicas: expected numeric (int or float), got string".
    return "failed to create typed patch object" in (err.body or "")


def _forbidden_by_admission(err: ApiException) -> bool:
    # 403 from an admission plugin (e.g. a namespace being terminated), not from RBAC.
    return "is forbidden: User" not in (err.body or "")


def get(
    api: ApiClient, api_version: str, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """The object, or ``None`` when it does not exist."""
    try:
        obj: dict[str, Any] = _request(
            api, "GET", object_path(api, api_version, kind, name, namespace)
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return obj


def list_objects(
    api: ApiClient,
    api_version: str,
    kind: str,
    namespace: str | None = None,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> list[dict[str, Any]]:
    query = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    result = _request(api, "GET", object_path(api, api_version, kind, None, namespace), query=query)
    items: list[dict[str, Any]] = result.get("items", [])
    return items


def delete(
    api: ApiClient,
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None = None,
    *,
    propagation_policy: str | None = None,
    grace_period_seconds: int | None = None,
) -> dict[str, Any] | None:
    """Delete (``Foreground``, ``Background`` or ``Orphan`` propagation); ``None`` if absent."""
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
    if propagation_policy:
        body["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        body["gracePeriodSeconds"] = grace_period_seconds
    try:
        result: dict[str, Any] = _request(
            api,
            "DELETE",
            object_path(api, api_version, kind, name, namespace),
            body=body,
            content_type="application/json",
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return result


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll ``check`` until it returns something other than ``None``/``False``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 in front of the API server, to break the network between a
    client and it: :meth:`cut` drops every open connection (a watch cut mid-stream), and while
    :meth:`down` new connections are refused."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("https://").rpartition(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.refusing = False
        self.accepted = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def down(self) -> None:
        self.refusing = True
        self.cut()

    def up(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()

    def api_client(self, kubeconfig: Path) -> ApiClient:
        """A client for the admin user that goes through this proxy."""
        from kubernetes import config

        from app.cluster.kubernetes import sized

        configuration = sized(Configuration())
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
        configuration.host = self.url
        return ApiClient(configuration)
