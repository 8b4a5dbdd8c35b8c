"""What every workload type shares: names, labels, the pod template, scheduler integration.

Spec-to-pod mapping (SPEC §2, §6):

* image, imagePullPolicy, command, args, workingDir, environmentVariables -> the container.
* compute: cpuCoreRequest/Limit -> requests/limits ``cpu`` (cores as ``500m``);
  cpuMemoryRequest/Limit -> ``memory``; gpuDevicesRequest -> ``nvidia.com/gpu`` limits (the API
  server defaults requests from limits); extendedResources -> equal requests and limits (the API
  server refuses overcommitted extended resources); largeShmRequest -> a memory-backed emptyDir
  at ``/dev/shm``.
* GPU fractions exist only with KAI-Scheduler: gpuPortionRequest -> pod annotation
  ``gpu-fraction``, gpuMemoryRequest -> ``gpu-memory`` (MiB, rounded up). Without KAI they are
  refused by :func:`check_container_spec`, never silently dropped.
* storage: PVCs and hostPaths as volumes ``pvc-<i>`` / ``hostpath-<i>`` (derived names, so that
  any claim name fits the volume-name rules).
* nodePools -> required node affinity ``<node_pool_label_key> In [pools]``, plus preferred terms
  with decreasing weights so that the pools' order is honoured; nodeType -> ``In [type]`` on
  ``<node_type_label_key>`` in the same term (both must hold).
* tolerations (``seconds`` -> ``tolerationSeconds``), security -> container securityContext,
  priorityClass -> ``priorityClassName``.
* labels and annotations -> every object and pod template, under Runplane's own labels
  (``app.kubernetes.io/managed-by``, ``runplane.io/workload-id``, ``runplane.io/project``,
  ``runplane.io/workload-type``, ``runplane.io/workload-name``), which a user may not set.
* preemptibility -> label ``kai.scheduler/preemptibility`` (KAI's documented override on the top
  owner and pods; other schedulers ignore the label, so it is rendered whatever the scheduler).

Schedulers: ``kai`` sets ``schedulerName: kai-scheduler`` and the ``kai.scheduler/queue`` label on
the workload object and its pod templates (KAI's pod-grouper reads the top owner, then the pod).
``kueue`` sets ``kueue.x-k8s.io/queue-name`` on the workload object, and on the pod template too
for StatefulSets and Deployments (Kueue's pod-group integration); Jobs are rendered suspended
because Kueue admits a workload by unsuspending it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from app.domain.fields import map_paths
from app.domain.labels import (
    GPU_RESOURCE,
    KAI_GPU_FRACTION_ANNOTATION,
    KAI_GPU_MEMORY_ANNOTATION,
    KAI_PREEMPTIBILITY_LABEL,
    KAI_QUEUE_LABEL,
    KAI_SCHEDULER_NAME,
    KUEUE_QUEUE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PROJECT_LABEL,
    ROLE_LABEL,
    RUNPLANE_DOMAIN,
    WORKLOAD_ID_LABEL,
    WORKLOAD_NAME_LABEL,
    WORKLOAD_TYPE_LABEL,
)
from app.domain.quantity import quantity_value
from app.domain.spec import WORKLOAD_TYPES, CommonSpec
from app.fieldpath import error_message, field_path
from app.rendering import syntax
from app.rendering.context import SCHEDULERS, RenderContext

Manifest = dict[str, Any]
Problem = tuple[str, str]

SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
MAX_NAME_LENGTH = 40

# Keys Runplane renders itself; a user label or annotation may not take them over.
RESERVED_LABELS = frozenset(
    {MANAGED_BY_LABEL, KAI_QUEUE_LABEL, KAI_PREEMPTIBILITY_LABEL, KUEUE_QUEUE_LABEL}
)
RESERVED_ANNOTATIONS = frozenset({KAI_GPU_FRACTION_ANNOTATION, KAI_GPU_MEMORY_ANNOTATION})
# Fields of the common spec (camelCase), i.e. what a masterSpec may set.
COMMON_FIELDS = frozenset(f.alias or n for n, f in CommonSpec.model_fields.items())


# --- names and metadata ---


def runplane_labels(ctx: RenderContext) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        WORKLOAD_ID_LABEL: ctx.workload_id,
        PROJECT_LABEL: ctx.project,
        WORKLOAD_TYPE_LABEL: ctx.workload_type,
        WORKLOAD_NAME_LABEL: ctx.name,
    }


def selector_labels(ctx: RenderContext) -> dict[str, str]:
    """What Services and controllers select pods by: the id, which never changes or repeats."""
    return {WORKLOAD_ID_LABEL: ctx.workload_id}


def _preemptibility_labels(spec: Mapping[str, Any]) -> dict[str, str]:
    value = spec.get("preemptibility")
    return {KAI_PREEMPTIBILITY_LABEL: value} if value else {}


def _queue_labels(ctx: RenderContext) -> dict[str, str]:
    if ctx.scheduler == "kai":
        return {KAI_QUEUE_LABEL: ctx.effective_queue}
    if ctx.scheduler == "kueue":
        return {KUEUE_QUEUE_LABEL: ctx.effective_queue}
    return {}


def _labels(*parts: Mapping[str, str]) -> dict[str, str]:
    """Merge label sets, the first one winning: Runplane's own keys come first and stay."""
    out: dict[str, str] = {}
    for part in parts:
        for key, value in part.items():
            out.setdefault(key, value)
    return out


def object_meta(ctx: RenderContext, name: str, *, workload_object: bool = False) -> dict[str, Any]:
    """Metadata of a top-level object; ``workload_object`` for the one that owns the pods."""
    scheduling = (
        {**_queue_labels(ctx), **_preemptibility_labels(ctx.spec)} if workload_object else {}
    )
    labels = _labels(runplane_labels(ctx), scheduling, ctx.spec.get("labels") or {})
    meta: dict[str, Any] = {"name": name, "namespace": ctx.namespace, "labels": labels}
    annotations = ctx.spec.get("annotations")
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def manifest(api_version: str, kind: str, metadata: dict[str, Any], spec: Any) -> Manifest:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}


# --- the pod template ---


def normalized_ports(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The spec's ports with defaults filled: ``{name, container, serviceType, external}``."""
    out = []
    for port in spec.get("ports") or []:
        container = int(port["container"])
        out.append(
            {
                "name": port["name"],
                "container": container,
                "serviceType": port.get("serviceType") or "ClusterIP",
                "external": int(port.get("external") or container),
            }
        )
    return out


def container_ports(ports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One container port per number (several Services may expose the same container port)."""
    seen: set[int] = set()
    out = []
    for port in ports:
        if port["container"] in seen:
            continue
        seen.add(port["container"])
        out.append({"name": port["name"], "containerPort": port["container"], "protocol": "TCP"})
    return out


def resources(ctx: RenderContext, spec: Mapping[str, Any]) -> dict[str, Any]:
    compute: Mapping[str, Any] = spec.get("compute") or {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if compute.get("cpuCoreRequest") is not None:
        requests["cpu"] = syntax.cpu_quantity(compute["cpuCoreRequest"])
    if compute.get("cpuCoreLimit") is not None:
        limits["cpu"] = syntax.cpu_quantity(compute["cpuCoreLimit"])
    if compute.get("cpuMemoryRequest") is not None:
        requests["memory"] = str(compute["cpuMemoryRequest"])
    if compute.get("cpuMemoryLimit") is not None:
        limits["memory"] = str(compute["cpuMemoryLimit"])
    for item in compute.get("extendedResources") or []:
        requests[item["resource"]] = limits[item["resource"]] = str(item["quantity"])
    gpus = compute.get("gpuDevicesRequest")
    if gpus:
        limits[GPU_RESOURCE] = str(int(gpus))
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def gpu_memory_mib(quantity: str) -> int:
    """KAI's ``gpu-memory`` is in MiB; round up so that the reservation is never smaller."""
    return max(1, math.ceil(quantity_value(quantity) / (1024 * 1024)))


def _kai_annotations(ctx: RenderContext, spec: Mapping[str, Any]) -> dict[str, str]:
    if ctx.scheduler != "kai":
        return {}
    compute: Mapping[str, Any] = spec.get("compute") or {}
    out = {}
    if compute.get("gpuPortionRequest") is not None:
        out[KAI_GPU_FRACTION_ANNOTATION] = str(float(compute["gpuPortionRequest"]))
    if compute.get("gpuMemoryRequest") is not None:
        out[KAI_GPU_MEMORY_ANNOTATION] = str(gpu_memory_mib(compute["gpuMemoryRequest"]))
    return out


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def affinity(ctx: RenderContext, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    pools = _unique(spec.get("nodePools") or [])
    node_type = spec.get("nodeType")
    expressions = []
    if pools:
        expressions.append({"key": ctx.node_pool_label_key, "operator": "In", "values": pools})
    if node_type:
        expressions.append(
            {"key": ctx.node_type_label_key, "operator": "In", "values": [node_type]}
        )
    if not expressions:
        return None
    node_affinity: dict[str, Any] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": expressions}]
        }
    }
    if len(pools) > 1:
        # Required affinity cannot express an order; decreasing weights make the scheduler
        # prefer the first pool that has room, as Run:ai's ordered node pools do.
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {
                "weight": 100 - i,
                "preference": {
                    "matchExpressions": [
                        {"key": ctx.node_pool_label_key, "operator": "In", "values": [pool]}
                    ]
                },
            }
            for i, pool in enumerate(pools)
        ]
    return {"nodeAffinity": node_affinity}


def tolerations(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in spec.get("tolerations") or []:
        tol: dict[str, Any] = {}
        if item.get("key"):
            tol["key"] = item["key"]
        tol["operator"] = item.get("operator") or "Equal"
        if item.get("value") is not None:
            tol["value"] = item["value"]
        if item.get("effect"):
            tol["effect"] = item["effect"]
        if item.get("seconds") is not None:
            tol["tolerationSeconds"] = int(item["seconds"])
        out.append(tol)
    return out


def volumes(spec: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(volumes, volumeMounts)`` for the pod and its one container."""
    vols: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    storage: Mapping[str, Any] = spec.get("storage") or {}
    for i, pvc in enumerate(storage.get("pvc") or []):
        name = f"pvc-{i}"
        claim: dict[str, Any] = {"claimName": pvc["claimName"]}
        mount: dict[str, Any] = {"name": name, "mountPath": pvc["path"]}
        if pvc.get("readOnly"):
            claim["readOnly"] = True
            mount["readOnly"] = True
        vols.append({"name": name, "persistentVolumeClaim": claim})
        mounts.append(mount)
    for i, host in enumerate(storage.get("hostPath") or []):
        name = f"hostpath-{i}"
        mount = {"name": name, "mountPath": host["mountPath"]}
        if host.get("readOnly"):
            mount["readOnly"] = True
        vols.append({"name": name, "hostPath": {"path": host["path"]}})
        mounts.append(mount)
    if (spec.get("compute") or {}).get("largeShmRequest"):
        vols.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    return vols, mounts


def security_context(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    security: Mapping[str, Any] = spec.get("security") or {}
    out: dict[str, Any] = {}
    for src, dst in (
        ("runAsUid", "runAsUser"),
        ("runAsGid", "runAsGroup"),
        ("runAsNonRoot", "runAsNonRoot"),
        ("allowPrivilegeEscalation", "allowPrivilegeEscalation"),
    ):
        if security.get(src) is not None:
            out[dst] = security[src]
    return out or None


def env(spec: Mapping[str, Any], extra: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Runplane's variables (``extra``) first; a user variable of the same name replaces one."""
    out: dict[str, dict[str, Any]] = {item["name"]: dict(item) for item in extra}
    for item in spec.get("environmentVariables") or []:
        out[item["name"]] = {"name": item["name"], "value": item.get("value", "")}
    return list(out.values())


def container(
    ctx: RenderContext,
    spec: Mapping[str, Any],
    *,
    name: str,
    ports: Sequence[Mapping[str, Any]] = (),
    extra_env: Sequence[Mapping[str, Any]] = (),
    mounts: Sequence[Mapping[str, Any]] = (),
    readiness_probe: Mapping[str, Any] | None = None,
    with_command: bool = True,
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": spec.get("image", "")}
    if spec.get("imagePullPolicy"):
        c["imagePullPolicy"] = spec["imagePullPolicy"]
    if with_command and spec.get("command"):
        c["command"] = list(spec["command"])
    if with_command and spec.get("args"):
        c["args"] = list(spec["args"])
    if spec.get("workingDir"):
        c["workingDir"] = spec["workingDir"]
    env_vars = env(spec, extra_env)
    if env_vars:
        c["env"] = env_vars
    cports = container_ports(ports)
    if cports:
        c["ports"] = cports
    res = resources(ctx, spec)
    if res:
        c["resources"] = res
    if mounts:
        c["volumeMounts"] = [dict(m) for m in mounts]
    if readiness_probe:
        c["readinessProbe"] = dict(readiness_probe)
    sc = security_context(spec)
    if sc:
        c["securityContext"] = sc
    return c


def pod_template(
    ctx: RenderContext,
    spec: Mapping[str, Any],
    *,
    container_name: str,
    restart_policy: str | None,
    role: str | None = None,
    pod_queue_label: bool = False,
    ports: Sequence[Mapping[str, Any]] = (),
    extra_env: Sequence[Mapping[str, Any]] = (),
    readiness_probe: Mapping[str, Any] | None = None,
    subdomain: str | None = None,
    with_command: bool = True,
) -> dict[str, Any]:
    """A PodTemplateSpec for one container built from ``spec`` (the workload's or masterSpec).

    ``restart_policy`` None leaves it to the controller (Kubeflow sets it per replica type);
    ``pod_queue_label`` also puts the Kueue queue label on the pods (pod-based integrations).
    """
    own = runplane_labels(ctx)
    if role:
        own[ROLE_LABEL] = role
    queue = _queue_labels(ctx) if ctx.scheduler == "kai" or pod_queue_label else {}
    labels = _labels(own, queue, _preemptibility_labels(spec), spec.get("labels") or {})
    metadata: dict[str, Any] = {"labels": labels}
    annotations = dict(spec.get("annotations") or {})
    annotations.update(_kai_annotations(ctx, spec))
    if annotations:
        metadata["annotations"] = annotations

    vols, mounts = volumes(spec)
    pod: dict[str, Any] = {}
    if ctx.scheduler == "kai":
        pod["schedulerName"] = KAI_SCHEDULER_NAME
    if spec.get("priorityClass"):
        pod["priorityClassName"] = spec["priorityClass"]
    if restart_policy:
        pod["restartPolicy"] = restart_policy
    if subdomain:
        pod["subdomain"] = subdomain
    aff = affinity(ctx, spec)
    if aff:
        pod["affinity"] = aff
    tols = tolerations(spec)
    if tols:
        pod["tolerations"] = tols
    pod["containers"] = [
        container(
            ctx,
            spec,
            name=container_name,
            ports=ports,
            extra_env=extra_env,
            mounts=mounts,
            readiness_probe=readiness_probe,
            with_command=with_command,
        )
    ]
    if vols:
        pod["volumes"] = vols
    return {"metadata": metadata, "spec": pod}


# --- Services for ports ---

_SERVICE_SUFFIX = {"ClusterIP": "", "NodePort": "-nodeport", "LoadBalancer": "-lb"}


def service_name(ctx: RenderContext, service_type: str) -> str:
    """``<name>`` for ClusterIP ports, ``<name>-nodeport`` / ``<name>-lb`` for the others.

    A Service has one type, so ports of different types need different Services; at most
    40 + 9 characters, well within the DNS-1035 limit of 63.
    """
    return ctx.name + _SERVICE_SUFFIX[service_type]


def service_groups(ports: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for service_type in _SERVICE_SUFFIX:
        members = [p for p in ports if p["serviceType"] == service_type]
        if members:
            groups[service_type] = members
    return groups


def port_services(ctx: RenderContext, ports: Sequence[Mapping[str, Any]]) -> list[Manifest]:
    out = []
    for service_type, members in service_groups(ports).items():
        service_ports = []
        for port in members:
            sp: dict[str, Any] = {
                "name": port["name"],
                "port": port["external"],
                "targetPort": port["container"],
                "protocol": "TCP",
            }
            if port.get("appProtocol"):
                sp["appProtocol"] = port["appProtocol"]
            service_ports.append(sp)
        out.append(
            manifest(
                "v1",
                "Service",
                object_meta(ctx, service_name(ctx, service_type)),
                {"type": service_type, "selector": selector_labels(ctx), "ports": service_ports},
            )
        )
    return out


# --- masterSpec ---


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: objects merge key by key, lists and scalars are replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def common_part(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k in COMMON_FIELDS}


# --- checks: what cannot be rendered ---


def check_context(ctx: RenderContext) -> list[Problem]:
    """The workload's own names and the settings, all of which end up in names and labels."""
    problems: list[Problem] = []
    problem = syntax.dns1035_label_problem(ctx.name, MAX_NAME_LENGTH)
    if problem:
        problems.append(("name", f"workload name {ctx.name!r} {problem}"))
    problem = syntax.uuid_problem(ctx.workload_id)
    if problem:
        problems.append(("id", f"workload id {ctx.workload_id!r} {problem}"))
    problem = syntax.dns1123_label_problem(ctx.project) or syntax.label_value_problem(ctx.project)
    if problem:
        problems.append(("project", f"project name {ctx.project!r} {problem}"))
    problem = syntax.dns1123_label_problem(ctx.namespace)
    if problem:
        problems.append(("namespace", f"namespace {ctx.namespace!r} {problem}"))
    if ctx.workload_type not in WORKLOAD_TYPES:
        problems.append(("type", f"unknown workload type {ctx.workload_type!r}"))
    if ctx.scheduler not in SCHEDULERS:
        problems.append(("scheduler", f"unknown scheduler {ctx.scheduler!r}"))
    if ctx.scheduler in ("kai", "kueue"):
        problem = syntax.label_value_problem(ctx.effective_queue) or (
            "must not be empty" if not ctx.effective_queue else None
        )
        if problem:
            problems.append(("queue", f"scheduler queue {ctx.effective_queue!r} {problem}"))
    for field, key in (
        ("nodePools", ctx.node_pool_label_key),
        ("nodeType", ctx.node_type_label_key),
    ):
        problem = syntax.qualified_name_problem(key)
        if problem:
            problems.append((field, f"node label key setting {key!r} {problem}"))
    return problems


def check_metadata(spec: Mapping[str, Any], prefix: str = "") -> list[Problem]:
    """User labels and annotations: Kubernetes syntax, and no key that Runplane sets itself."""
    problems: list[Problem] = []
    for key, value in (spec.get("labels") or {}).items():
        field = f"{prefix}labels"
        problem = syntax.qualified_name_problem(key)
        if problem:
            problems.append((field, f"label key {key!r} {problem}"))
        elif _reserved(key, RESERVED_LABELS):
            problems.append((field, f"label key {key!r} is set by Runplane and cannot be set"))
        problem = syntax.label_value_problem(value)
        if problem:
            problems.append((field, f"label {key!r}: value {value!r} {problem}"))
    annotations: Mapping[str, Any] = spec.get("annotations") or {}
    for key in annotations:
        field = f"{prefix}annotations"
        problem = syntax.qualified_name_problem(key)
        if problem:
            problems.append((field, f"annotation key {key!r} {problem}"))
        elif _reserved(key, RESERVED_ANNOTATIONS):
            problems.append((field, f"annotation key {key!r} is set by Runplane and cannot be set"))
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > syntax.ANNOTATIONS_TOTAL_MAX:
        problems.append(
            (f"{prefix}annotations", f"annotations total {size} bytes, more than 256 KiB")
        )
    return problems


# Set by users on purpose: the simulated cluster reads them to play a workload's fate.
USER_DOMAINS = frozenset({"simulation." + RUNPLANE_DOMAIN})


def _reserved(key: str, reserved: frozenset[str]) -> bool:
    domain = key.rpartition("/")[0]
    if domain in USER_DOMAINS:
        return False
    return key in reserved or domain == RUNPLANE_DOMAIN or domain.endswith("." + RUNPLANE_DOMAIN)


def check_spec_names(spec: Mapping[str, Any], prefix: str = "") -> list[Problem]:
    """Names and label values that a container spec puts into the objects."""
    problems = check_metadata(spec, prefix)
    for i, pool in enumerate(spec.get("nodePools") or []):
        problem = syntax.label_value_problem(pool)
        if problem:
            problems.append((f"{prefix}nodePools[{i}]", f"node pool {pool!r} {problem}"))
    if spec.get("nodeType") is not None:
        problem = syntax.label_value_problem(spec["nodeType"])
        if problem:
            problems.append((f"{prefix}nodeType", f"node type {spec['nodeType']!r} {problem}"))
    if spec.get("priorityClass") is not None:
        problem = syntax.dns1123_subdomain_problem(spec["priorityClass"])
        if problem:
            problems.append(
                (f"{prefix}priorityClass", f"priority class {spec['priorityClass']!r} {problem}")
            )
    storage: Mapping[str, Any] = spec.get("storage") or {}
    for i, pvc in enumerate(storage.get("pvc") or []):
        problem = syntax.dns1123_subdomain_problem(pvc.get("claimName", ""))
        if problem:
            problems.append(
                (f"{prefix}storage.pvc[{i}].claimName", f"claim {pvc.get('claimName')!r} {problem}")
            )
    for i, tol in enumerate(spec.get("tolerations") or []):
        field = f"{prefix}tolerations[{i}]"
        if tol.get("key"):
            problem = syntax.qualified_name_problem(tol["key"])
            if problem:
                problems.append((f"{field}.key", f"toleration key {tol['key']!r} {problem}"))
        if tol.get("value"):
            problem = syntax.label_value_problem(tol["value"])
            if problem:
                problems.append((f"{field}.value", f"toleration value {tol['value']!r} {problem}"))
    for i, res in enumerate((spec.get("compute") or {}).get("extendedResources") or []):
        problem = syntax.resource_name_problem(res.get("resource", ""))
        if problem:
            problems.append(
                (
                    f"{prefix}compute.extendedResources[{i}].resource",
                    f"resource name {res.get('resource')!r} {problem}",
                )
            )
    return problems


def check_container_spec(
    ctx: RenderContext, spec: Mapping[str, Any], prefix: str = ""
) -> list[Problem]:
    """Everything about one container spec that Kubernetes or the scheduler would refuse."""
    problems = check_spec_names(spec, prefix)
    image = spec.get("image")
    if not image:
        problems.append((f"{prefix}image", "an image is required"))
    elif image != image.strip():
        problems.append((f"{prefix}image", "image must not have leading or trailing whitespace"))

    compute: Mapping[str, Any] = spec.get("compute") or {}
    kai = ctx.scheduler == "kai"
    portion = compute.get("gpuPortionRequest")
    gpu_memory = compute.get("gpuMemoryRequest")
    if portion is not None and not kai:
        problems.append(
            (
                f"{prefix}compute.gpuPortionRequest",
                "fractional GPUs need the KAI-Scheduler; this cluster's scheduler is "
                f"{ctx.scheduler!r}: request whole GPUs (gpuDevicesRequest) instead",
            )
        )
    if gpu_memory is not None:
        if not kai:
            problems.append(
                (
                    f"{prefix}compute.gpuMemoryRequest",
                    "GPU memory reservations need the KAI-Scheduler; this cluster's scheduler is "
                    f"{ctx.scheduler!r}: request whole GPUs (gpuDevicesRequest) instead",
                )
            )
        elif portion is not None:
            problems.append(
                (
                    f"{prefix}compute.gpuMemoryRequest",
                    "gpuMemoryRequest and gpuPortionRequest cannot both be set",
                )
            )
        if (compute.get("gpuDevicesRequest") or 0) > 0:
            problems.append(
                (
                    f"{prefix}compute.gpuMemoryRequest",
                    "gpuMemoryRequest cannot be combined with gpuDevicesRequest > 0",
                )
            )
    extended = compute.get("extendedResources") or []
    has_cpu_or_memory = any(
        compute.get(k) is not None
        for k in ("cpuCoreRequest", "cpuCoreLimit", "cpuMemoryRequest", "cpuMemoryLimit")
    )
    for i, res in enumerate(extended):
        field = f"{prefix}compute.extendedResources[{i}]"
        name = res.get("resource", "")
        if name in ("cpu", "memory"):
            problems.append((f"{field}.resource", f"set {name} with the compute.cpu* fields"))
        elif name == GPU_RESOURCE:
            problems.append(
                (f"{field}.resource", "set nvidia.com/gpu with compute.gpuDevicesRequest")
            )
        elif name.startswith("hugepages-") and not has_cpu_or_memory:
            problems.append((f"{field}.resource", "hugepages need a cpu or memory request"))
        quantity = str(res.get("quantity", ""))
        problem = syntax.quantity_problem(quantity)
        if problem:
            problems.append((f"{field}.quantity", problem))
        elif not syntax.is_standard_resource(name) and quantity_value(quantity) % 1 != 0:
            problems.append((f"{field}.quantity", f"{name} must be a whole number"))

    problems += _check_volumes(spec, prefix)
    problems += _check_tolerations(spec, prefix)
    security: Mapping[str, Any] = spec.get("security") or {}
    if security.get("runAsNonRoot") and security.get("runAsUid") == 0:
        problems.append(
            (f"{prefix}security.runAsNonRoot", "runAsNonRoot cannot be combined with runAsUid 0")
        )
    return problems


def _check_volumes(spec: Mapping[str, Any], prefix: str) -> list[Problem]:
    problems: list[Problem] = []
    storage: Mapping[str, Any] = spec.get("storage") or {}
    paths: list[tuple[str, str]] = [
        (f"{prefix}storage.pvc[{i}].path", v.get("path", ""))
        for i, v in enumerate(storage.get("pvc") or [])
    ]
    paths += [
        (f"{prefix}storage.hostPath[{i}].mountPath", v.get("mountPath", ""))
        for i, v in enumerate(storage.get("hostPath") or [])
    ]
    if (spec.get("compute") or {}).get("largeShmRequest"):
        paths.append((f"{prefix}compute.largeShmRequest", SHM_PATH))
    seen: dict[str, str] = {}
    for field, path in paths:
        normal = path.rstrip("/") or "/"
        if normal in seen:
            problems.append((field, f"mount path {path!r} is also used by {seen[normal]}"))
        else:
            seen[normal] = field
    return problems


def _check_tolerations(spec: Mapping[str, Any], prefix: str) -> list[Problem]:
    problems: list[Problem] = []
    for i, tol in enumerate(spec.get("tolerations") or []):
        field = f"{prefix}tolerations[{i}]"
        operator = tol.get("operator") or "Equal"
        if operator == "Exists" and tol.get("value"):
            problems.append((f"{field}.value", "value must be empty when operator is Exists"))
        if not tol.get("key") and operator != "Exists":
            problems.append((f"{field}.operator", "operator must be Exists when key is empty"))
        if tol.get("seconds") is not None and tol.get("effect") != "NoExecute":
            problems.append((f"{field}.seconds", "seconds applies only to effect NoExecute"))
    return problems


def check_ports(
    ports: Sequence[Mapping[str, Any]],
    *,
    reserved_names: Iterable[str] = (),
    services: bool = True,
    field: str = "ports",
) -> list[Problem]:
    """Port names and, when ``services`` are rendered for them, each Service's port numbers."""
    problems: list[Problem] = []
    reserved = set(reserved_names)
    for port in ports:
        if port["name"] in reserved:
            problems.append((field, f"port name {port['name']!r} is reserved"))
        problem = syntax.port_name_problem(port["name"])
        if problem:
            problems.append((field, f"port name {port['name']!r} {problem}"))
    groups = service_groups(ports) if services else {}
    for service_type, members in groups.items():
        seen: set[int] = set()
        for port in members:
            if port["external"] in seen:
                problems.append(
                    (
                        field,
                        f"{service_type} port {port['external']} is exposed twice "
                        f"(port {port['name']!r})",
                    )
                )
            seen.add(port["external"])
    return problems


def revalidate_common(spec: Mapping[str, Any], prefix: str) -> list[Problem]:
    """Re-check a merged spec (masterSpec over the workers') with the spec model's own rules."""
    try:
        CommonSpec.model_validate(common_part(spec))
    except ValidationError as exc:
        maps = map_paths(CommonSpec)
        return [
            (field_path(err["loc"], prefix=prefix, maps=maps) or "spec", error_message(err))
            for err in exc.errors()
        ]
    return []
