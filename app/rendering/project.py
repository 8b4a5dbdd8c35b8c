"""A project's own cluster objects (SPEC §6), rendered from the project alone: pure.

- Every scheduler: the project's Namespace.
- ``kueue``: a ResourceFlavor shared by every project (``runplane``), a ClusterQueue per project
  (named after its namespace) in one cohort (``runplane``), so that what a project does not use
  is lent to the others and reclaimed when it wants it back (``reclaimWithinCohort: Any``), and
  a LocalQueue in the namespace, named as the workloads' ``kueue.x-k8s.io/queue-name`` says.
  Per resource, ``nominalQuota`` is the deserved amount and ``borrowingLimit`` the limit less it
  (none: no cap); ``fairSharing.weight`` the GPU overQuotaWeight. Kueue cannot leave a covered
  resource without quota, so a resource the project's quota leaves out gets
  :data:`KUEUE_UNLIMITED`.
- ``kai``: a ``scheduling.run.ai/v2`` Queue per project, named as the workloads'
  ``kai.scheduler/queue`` label says, under one parent Queue (``runplane``) that holds them all;
  ``resources.{gpu,cpu,memory}.{quota,limit,overQuotaWeight}`` in KAI's units: GPUs, CPU
  millicores, memory in MB (10^6 bytes, rounded up), -1 for unlimited.
- ``none``: a ResourceQuota in the namespace (``requests.nvidia.com/gpu``, ``requests.cpu``,
  ``requests.memory``) at the project's cap: the limit, else the deserved amount, since without a
  scheduler that lends and reclaims, what a project used over its quota could never be taken
  back. A resource the quota leaves out is not capped.

:func:`shared` are the objects every project of a scheduler uses; they carry no project label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.domain import kinds
from app.domain.labels import GPU_RESOURCE, MANAGED_BY, MANAGED_BY_LABEL, PROJECT_LABEL
from app.domain.quota import RESOURCES, Quota, Resource, ResourceQuota, from_document
from app.rendering.common import Manifest
from app.rendering.context import SCHEDULERS, Scheduler

SHARED_NAME = "runplane"  # the ResourceFlavor, the cohort and the parent Queue
RESOURCE_QUOTA_NAME = "runplane-quota"
# What a Kueue ClusterQueue gets for a resource the project does not limit: more than any
# cluster has (Kueue has no "unlimited").
KUEUE_UNLIMITED: Mapping[Resource, str] = {"gpu": "1M", "cpu": "1G", "memory": "1Ei"}
_KUEUE_RESOURCES: Mapping[Resource, str] = {"gpu": GPU_RESOURCE, "cpu": "cpu", "memory": "memory"}
_QUOTA_KEYS: Mapping[Resource, str] = {
    "gpu": f"requests.{GPU_RESOURCE}",
    "cpu": "requests.cpu",
    "memory": "requests.memory",
}


@dataclass(frozen=True, kw_only=True)
class ProjectContext:
    """What a project's objects are rendered from."""

    name: str
    namespace: str
    queue: str  # the queue in effect: the project's, else its name
    scheduler: Scheduler
    quota: Quota

    @classmethod
    def of(
        cls,
        *,
        name: str,
        namespace: str,
        queue: str | None,
        scheduler: str | None,
        quota: Mapping[str, Any],
        default_scheduler: Scheduler,
    ) -> ProjectContext:
        """From a stored project (its quota document) and the deployment's scheduler setting."""
        chosen = next((s for s in SCHEDULERS if s == scheduler), default_scheduler)
        return cls(
            name=name,
            namespace=namespace,
            queue=queue or name,
            scheduler=chosen,
            quota=from_document(quota),
        )


def _meta(name: str, *, project: str | None, namespace: str | None = None) -> dict[str, Any]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    if project is not None:
        labels[PROJECT_LABEL] = project
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _object(kind: kinds.Kind, meta: dict[str, Any], spec: dict[str, Any]) -> Manifest:
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta, "spec": spec}


def _number(value: Decimal) -> int | float:
    """A JSON number: an int when it is one."""
    return int(value) if value == value.to_integral_value() else float(value)


def _quantity(value: Decimal) -> str:
    return format(value.normalize(), "f")


def render_project(ctx: ProjectContext) -> list[Manifest]:
    """The project's objects, in apply order (the namespace first)."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(ctx.namespace, project=ctx.name),
    }
    if ctx.scheduler == "kueue":
        return [namespace, *_kueue(ctx)]
    if ctx.scheduler == "kai":
        return [namespace, _kai_queue(ctx)]
    quota = _resource_quota(ctx)
    return [namespace, quota] if quota is not None else [namespace]


def project_objects(ctx: ProjectContext) -> list[Manifest]:
    """Everything the project needs in the cluster: its own objects and the shared ones."""
    return [*render_project(ctx), *shared(ctx.scheduler)]


def shared(scheduler: Scheduler) -> list[Manifest]:
    """The objects every project of ``scheduler`` shares."""
    if scheduler == "kueue":
        return [_object(kinds.RESOURCE_FLAVOR, _meta(SHARED_NAME, project=None), {})]
    if scheduler == "kai":
        unlimited = {"quota": -1, "limit": -1, "overQuotaWeight": 1}
        resources = {r: dict(unlimited) for r in RESOURCES}
        spec = {"displayName": "Runplane projects", "resources": resources}
        return [_object(kinds.KAI_QUEUE, _meta(SHARED_NAME, project=None), spec)]
    return []


def cluster_queue_name(ctx: ProjectContext) -> str:
    return ctx.namespace


def _kueue(ctx: ProjectContext) -> list[Manifest]:
    resources = []
    for resource in RESOURCES:
        q = ctx.quota.of(resource)
        entry: dict[str, Any] = {"name": _KUEUE_RESOURCES[resource]}
        if q.deserved is None:
            entry["nominalQuota"] = KUEUE_UNLIMITED[resource]
        else:
            entry["nominalQuota"] = _quantity(q.deserved)
            if q.limit is not None:
                entry["borrowingLimit"] = _quantity(q.limit - q.deserved)
        resources.append(entry)
    spec: dict[str, Any] = {
        "cohortName": SHARED_NAME,
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ctx.namespace}},
        "queueingStrategy": "BestEffortFIFO",
        "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"},
        "resourceGroups": [
            {
                "coveredResources": [_KUEUE_RESOURCES[r] for r in RESOURCES],
                "flavors": [{"name": SHARED_NAME, "resources": resources}],
            }
        ],
        "fairSharing": {"weight": _quantity(ctx.quota.gpu.over_quota_weight)},
    }
    cluster_queue = _object(
        kinds.CLUSTER_QUEUE, _meta(cluster_queue_name(ctx), project=ctx.name), spec
    )
    local_queue = _object(
        kinds.LOCAL_QUEUE,
        _meta(ctx.queue, project=ctx.name, namespace=ctx.namespace),
        {"clusterQueue": cluster_queue_name(ctx)},
    )
    return [cluster_queue, local_queue]


def _kai_units(resource: Resource, value: Decimal | None) -> int | float:
    if value is None:
        return -1
    if resource == "cpu":
        return math.ceil(value * 1000)  # millicores
    if resource == "memory":
        return math.ceil(value / 1_000_000)  # MB
    return _number(value)


def _kai_resource(resource: Resource, q: ResourceQuota) -> dict[str, Any]:
    unlimited = q.deserved is None
    return {
        "quota": _kai_units(resource, q.deserved),
        "limit": -1 if unlimited else _kai_units(resource, q.limit),
        "overQuotaWeight": _number(q.over_quota_weight),
    }


def _kai_queue(ctx: ProjectContext) -> Manifest:
    spec = {
        "displayName": ctx.name,
        "parentQueue": SHARED_NAME,
        "resources": {r: _kai_resource(r, ctx.quota.of(r)) for r in RESOURCES},
    }
    return _object(kinds.KAI_QUEUE, _meta(ctx.queue, project=ctx.name), spec)


def _resource_quota(ctx: ProjectContext) -> Manifest | None:
    hard = {}
    for resource in ctx.quota.limited:
        q = ctx.quota.of(resource)
        cap = q.limit if q.limit is not None else q.deserved
        if cap is not None:
            hard[_QUOTA_KEYS[resource]] = _quantity(cap)
    if not hard:
        return None
    return _object(
        kinds.RESOURCE_QUOTA,
        _meta(RESOURCE_QUOTA_NAME, project=ctx.name, namespace=ctx.namespace),
        {"hard": hard},
    )
