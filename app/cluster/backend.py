"""The cluster backend protocol: apply, delete and observe managed objects.

Suspend and resume are applies of the stopped or running form of a workload's manifests
(:func:`app.rendering.stopped_form`), so every backend supports them per kind
(Job ``suspend``, StatefulSet/Deployment ``replicas``, Kubeflow ``runPolicy.suspend``) with the
same one call. ``observe`` lists every managed object with one list call per kind and groups
what it finds by the ``runplane.io/workload-id`` label: never a call per workload.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.domain import kinds

FIELD_MANAGER = "runplane"

Manifest = dict[str, Any]


class ClusterError(Exception):
    """The cluster could not be reached or refused a call; the reconciler retries later."""


class ClusterUnreachable(ClusterError):
    """The API server could not be reached at all: nothing else will work this cycle either."""


class KindNotInstalled(ClusterError):
    """The cluster does not serve this kind (e.g. no Kubeflow training operator CRDs)."""

    def __init__(self, kind: kinds.Kind) -> None:
        self.api_version = kind.api_version
        self.kind = kind.kind
        super().__init__(
            f"The cluster does not serve {kind.kind} ({kind.api_version}): install "
            f"{kind.provided_by}, or render PyTorch natively (RUNPLANE_PYTORCH_NATIVE=true)."
        )


class ObjectRejected(ClusterError):
    """The API server rejected an object (invalid, forbidden): retrying will not help."""


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    # A project's objects say where they are (a workload's are all in its namespace).
    namespace: str | None = None

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectRef:
        meta = manifest["metadata"]
        return cls(manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace"))


@dataclass
class Observed:
    """One workload's objects (with status, as the API server shows them), its pods, and the
    cluster's events about them."""

    objects: list[Manifest] = field(default_factory=list)
    pods: list[Manifest] = field(default_factory=list)
    events: list[Manifest] = field(default_factory=list)


@dataclass
class Observation:
    """Everything managed, grouped by workload id; how many list calls it took; which
    workloads' objects changed since the previous observation (None: any may have); and the
    cluster's Nodes (None: this backend cannot tell)."""

    workloads: Mapping[str, Observed]
    list_calls: int
    changed: frozenset[str] | None = None
    nodes: Sequence[Manifest] | None = None
    # The projects' own objects (scheduler queues, ResourceQuotas) by their project label, ""
    # for those all projects share; None: this backend cannot tell.
    projects: Mapping[str, Sequence[Manifest]] | None = None

    def of(self, workload_id: str) -> Observed:
        return self.workloads.get(workload_id) or Observed()


class ClusterBackend(Protocol):
    """What the reconciler needs from a cluster. Every method is idempotent."""

    name: str

    def apply(self, *, workload_id: str, namespace: str, manifests: Sequence[Manifest]) -> None:
        """Create or update the objects (server-side apply, field manager ``runplane``).

        Raises :class:`KindNotInstalled`, :class:`ObjectRejected`, :class:`ClusterUnreachable`
        or another :class:`ClusterError` (retryable, e.g. a namespace still terminating).
        """
        ...

    def delete(self, *, workload_id: str, namespace: str, objects: Sequence[ObjectRef]) -> None:
        """Delete the objects with their dependents; objects already gone are fine."""
        ...

    def set_queue_active(self, *, workload_id: str, namespace: str, active: bool) -> None:
        """Stop (``active`` false) or resume a job that Kueue queues, through Kueue: its
        Workload's ``spec.active``. Kueue owns such a job's ``suspend`` (it admits a job by
        unsuspending it), so Runplane never writes that again once the job is in the cluster.
        Raises :class:`ClusterError` while Kueue has not made the Workload yet."""
        ...

    def apply_project(self, *, project: str, manifests: Sequence[Manifest]) -> None:
        """Create or update a project's own objects (``project`` "": those projects share), as
        :meth:`apply` does; a Namespace among them is created if the backend may."""
        ...

    def delete_project_objects(self, *, project: str, objects: Sequence[ObjectRef]) -> None:
        """Delete some of a project's own objects (never its namespace)."""
        ...

    def observe(self) -> Observation:
        """Every managed object and pod, and what changed since the last call."""
        ...

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when the cluster changes, if this backend can tell (else never)."""
        ...

    def close(self) -> None:
        """Stop whatever the backend runs (watches) and release its connections."""
        ...
