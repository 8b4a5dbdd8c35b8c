"""Pod logs from the Kubernetes API (``GET .../pods/{name}/log``), streamed.

:meth:`PodLogs.stream` answers the log as the API server sends it, chunk by chunk, never read
whole: each chunk is read in a worker thread (the client is blocking), and when the reader stops
(the client went away, the byte limit was reached) the connection is shut down, which also
wakes the thread still waiting in a followed read, so that nothing is left behind.
:meth:`PodLogs.tail` reads the last lines at once (the history of a finished workload).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import urllib3
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

from app.cluster.backend import ClusterError, ClusterUnreachable

CHUNK_BYTES = 64 * 1024
# What reading logs needs beyond the backend's REQUIRED_PERMISSIONS (deploy/rbac.yaml grants it).
LOG_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset({("", "pods/log", "get")})
FOLLOW_SILENCE_SECONDS = 24 * 3600.0


class LogNotFound(ClusterError):
    """The pod (or its container) is not there any more."""


class LogRefused(ClusterError):
    """The API server refused the request as asked (e.g. ``previous`` without an earlier run)."""


class PodLogs:
    def __init__(self, api_client: ApiClient, *, request_timeout: float = 10) -> None:
        self.core = CoreV1Api(api_client)
        self.request_timeout = request_timeout

    def _open(self, *, namespace: str, pod: str, follow: bool, **options: Any) -> Any:
        options = {k: v for k, v in options.items() if v is not None}
        try:
            return self.core.read_namespaced_pod_log(
                pod,
                namespace,
                follow=follow,
                _preload_content=False,
                # Connect within the timeout; a followed log may then stay silent a long time.
                _request_timeout=(self.request_timeout, FOLLOW_SILENCE_SECONDS if follow else 60),
                **options,
            )
        except ApiException as exc:
            message = _reason(exc)
            if exc.status == 404:
                raise LogNotFound(message) from exc
            if exc.status == 400:
                raise LogRefused(message) from exc
            raise ClusterError(f"read the log of {namespace}/{pod}: {message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachable(f"read the log of {namespace}/{pod}: {exc}") from exc

    async def open(
        self,
        *,
        namespace: str,
        pod: str,
        container: str,
        follow: bool,
        tail_lines: int | None,
        since_seconds: int | None,
        timestamps: bool,
        previous: bool,
        limit_bytes: int,
    ) -> AsyncIterator[bytes]:
        """Ask for the log (raising :class:`LogNotFound`, :class:`LogRefused` or a
        :class:`ClusterError` before anything is sent); answer its chunks as they come."""
        response = await anyio.to_thread.run_sync(
            lambda: self._open(
                namespace=namespace,
                pod=pod,
                container=container,
                follow=follow,
                tail_lines=tail_lines,
                since_seconds=since_seconds,
                timestamps=timestamps,
                previous=previous,
                limit_bytes=limit_bytes,
            )
        )
        return _chunks(response)

    def tail(self, *, namespace: str, pod: str, container: str, lines: int) -> list[str]:
        """The last ``lines`` lines, with their timestamps; [] when the pod is gone."""
        try:
            response = self._open(
                namespace=namespace,
                pod=pod,
                container=container,
                follow=False,
                tail_lines=lines,
                timestamps=True,
                limit_bytes=lines * 1024,
            )
        except (LogNotFound, LogRefused):
            return []
        try:
            text = str(response.data.decode("utf-8", "replace"))
        finally:
            response.release_conn()
        return text.splitlines()


async def _chunks(response: Any) -> AsyncIterator[bytes]:
    chunks = response.stream(CHUNK_BYTES, decode_content=True)
    ended = False
    try:
        while True:
            # Abandoned on cancellation: the shutdown below wakes the thread.
            chunk = await anyio.to_thread.run_sync(next, chunks, None, abandon_on_cancel=True)
            if chunk is None:
                ended = True
                return
            if chunk:
                yield chunk
    except (urllib3.exceptions.HTTPError, OSError):
        return  # the connection ended under a followed read: the log ends here
    finally:
        if not ended:
            # Stopped early (the client went away, the byte limit): wake the thread blocked in a
            # read, and close the connection, or the API server would stream on into the pool.
            with contextlib.suppress(RuntimeError, ValueError):
                response.shutdown()
            response.close()
        response.release_conn()


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
