"""Distributed workloads: Kubeflow PyTorchJob / TFJob (kubeflow.org/v1), MPIJob (v2beta1).

Replicas: one master (PyTorch ``Master``, TF ``Chief``, MPI ``Launcher``) and ``numWorkers``
(default 1) ``Worker`` replicas. Containers are named as the operators expect: ``pytorch``,
``tensorflow``, and by the mpi-operator convention ``mpi-launcher`` / ``mpi-worker``.
``cleanPodPolicy`` -> ``runPolicy.cleanPodPolicy``; stop -> ``runPolicy.suspend`` (always
rendered, so that resuming applies ``false``; ``true`` with Kueue, which admits by unsuspending).
``runPolicy.backoffLimit`` is 6, the Job API's default: the replicas restart in place
(``OnFailure``), and without a limit the training operator never fails a job whose program keeps
crashing (it restarts it for ever, holding its GPUs); the MPI operator hands it to its launcher Job.

The master's spec:

* ``masterSpecSameAsWorker`` true (default): the master uses the workload's spec. Exception for
  MPI: the launcher only runs ``mpirun`` (``runLauncherAsWorker`` is false), so it gets no GPU
  request, and the command/args are the launcher's while the workers keep the image's
  entrypoint (the mpi-operator convention: workers run sshd).
* ``masterSpecSameAsWorker`` false: the master uses ``masterSpec`` merged over the workload's spec
  (objects such as compute merge key by key; lists such as environmentVariables and scalars are
  replaced), so a masterSpec states only what differs. The top-level spec is then the workers'
  own, command included, for every framework.

Elastic PyTorch (minReplicas or maxReplicas set) follows the training operator's elastic
examples: Worker replicas only (``numWorkers`` of them, between the bounds) and
``elasticPolicy: {rdzvBackend: c10d, minReplicas, maxReplicas}``; a missing bound defaults to
numWorkers. A separate master spec cannot apply there and is refused.

``pytorch_native`` renders PyTorch without the operator: a headless Service ``<name>`` (clusterIP
None, publishNotReadyAddresses, so pod DNS resolves before readiness) and an Indexed Job
``<name>`` with completions = parallelism = numWorkers + 1 whose pods join the Service's
subdomain. Pod 0 is the rendezvous master; each pod gets what torchrun and ``env://`` need:
MASTER_ADDR (``<name>-0.<name>``), MASTER_PORT (29500), WORLD_SIZE (nodes) and NODE_RANK / RANK
(the completion index, via the pod annotation), plus torchrun's own ``PET_*`` spellings, as the
training operator does. backoffLimit is 0: a fixed-size process group cannot take back one
restarted rank, so the Job fails fast rather than hang. Elastic and a separate master spec are
refused (an Indexed Job has one pod template and a fixed size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain import kinds
from app.rendering import common
from app.rendering.common import Manifest, Problem
from app.rendering.context import RenderContext

MASTER_PORT = 29500
# Container restarts (summed over the pods) before the operator fails the job, as a Job's default.
BACKOFF_LIMIT = 6
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
GPU_FIELDS = ("gpuDevicesRequest", "gpuPortionRequest", "gpuMemoryRequest")


@dataclass(frozen=True)
class Framework:
    kind: kinds.Kind
    master_type: str
    master_container: str
    worker_container: str
    # The replica-level restartPolicy; None leaves the operator's default.
    restart_policy: str | None


FRAMEWORKS: dict[str, Framework] = {
    "PyTorch": Framework(kinds.PYTORCHJOB, "Master", "pytorch", "pytorch", "OnFailure"),
    "TF": Framework(kinds.TFJOB, "Chief", "tensorflow", "tensorflow", "OnFailure"),
    # mpi-operator defaults the launcher to OnFailure and workers to Never; keep its defaults.
    "MPI": Framework(kinds.MPIJOB, "Launcher", "mpi-launcher", "mpi-worker", None),
}


def num_workers(spec: Any) -> int:
    return int(spec.get("numWorkers") or 1)


def same_as_worker(spec: Any) -> bool:
    return spec.get("masterSpecSameAsWorker") is not False


def is_elastic(spec: Any) -> bool:
    return spec.get("distributedFramework") == "PyTorch" and (
        spec.get("minReplicas") is not None or spec.get("maxReplicas") is not None
    )


def elastic_bounds(spec: Any) -> tuple[int, int]:
    workers = num_workers(spec)
    lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
    lo = int(lo) if lo is not None else min(workers, int(hi) if hi is not None else workers)
    hi = int(hi) if hi is not None else max(workers, lo)
    return lo, hi


def is_native(ctx: RenderContext) -> bool:
    return ctx.pytorch_native and ctx.spec.get("distributedFramework") == "PyTorch"


def master_spec(spec: Any, framework: str) -> dict[str, Any]:
    """The spec the master / chief / launcher pod is rendered from (see the module docstring)."""
    if not same_as_worker(spec):
        return common.deep_merge(spec, spec.get("masterSpec") or {})
    out = dict(spec)
    if framework == "MPI" and out.get("compute"):
        out["compute"] = {k: v for k, v in out["compute"].items() if k not in GPU_FIELDS}
    return out


def suspended(ctx: RenderContext) -> bool:
    return ctx.stopped or ctx.scheduler == "kueue"


def _run_policy(ctx: RenderContext) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if ctx.spec.get("cleanPodPolicy"):
        policy["cleanPodPolicy"] = ctx.spec["cleanPodPolicy"]
    policy["backoffLimit"] = BACKOFF_LIMIT
    policy["suspend"] = suspended(ctx)
    return policy


def _replica(
    ctx: RenderContext,
    fw: Framework,
    spec: Any,
    *,
    replica_type: str,
    replicas: int,
    container_name: str,
    with_command: bool = True,
) -> dict[str, Any]:
    replica: dict[str, Any] = {"replicas": replicas}
    if fw.restart_policy:
        replica["restartPolicy"] = fw.restart_policy
    replica["template"] = common.pod_template(
        ctx,
        spec,
        container_name=container_name,
        restart_policy=None,
        role=replica_type.lower(),
        ports=common.normalized_ports(spec),
        with_command=with_command,
    )
    return replica


def render(ctx: RenderContext) -> list[Manifest]:
    spec = ctx.spec
    framework = spec.get("distributedFramework") or "PyTorch"
    if is_native(ctx):
        return _render_native(ctx)
    fw = FRAMEWORKS[framework]
    workers = num_workers(spec)
    replicas: dict[str, Any] = {}
    job_spec: dict[str, Any] = {}
    if is_elastic(spec):
        lo, hi = elastic_bounds(spec)
        job_spec["elasticPolicy"] = {"rdzvBackend": "c10d", "minReplicas": lo, "maxReplicas": hi}
    else:
        replicas[fw.master_type] = _replica(
            ctx,
            fw,
            master_spec(spec, framework),
            replica_type=fw.master_type,
            replicas=1,
            container_name=fw.master_container,
        )
    replicas["Worker"] = _replica(
        ctx,
        fw,
        spec,
        replica_type="Worker",
        replicas=workers,
        container_name=fw.worker_container,
        # MPI workers keep the image's entrypoint (sshd) unless the spec is explicitly theirs.
        with_command=not (framework == "MPI" and same_as_worker(spec)),
    )
    if framework == "MPI" and spec.get("slotsPerWorker") is not None:
        job_spec["slotsPerWorker"] = int(spec["slotsPerWorker"])
    job_spec["runPolicy"] = _run_policy(ctx)
    assert fw.kind.replica_specs
    job_spec[fw.kind.replica_specs] = replicas
    return [
        common.manifest(
            fw.kind.api_version,
            fw.kind.kind,
            common.object_meta(ctx, ctx.name, workload_object=True),
            job_spec,
        )
    ]


def _render_native(ctx: RenderContext) -> list[Manifest]:
    spec = ctx.spec
    nodes = num_workers(spec) + 1
    service = ctx.name
    master_addr = f"{ctx.name}-0.{service}"

    def rank(name: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_FIELD}}}

    torch_env: list[dict[str, Any]] = [
        {"name": "MASTER_ADDR", "value": master_addr},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "WORLD_SIZE", "value": str(nodes)},
        rank("NODE_RANK"),
        rank("RANK"),
        {"name": "PET_MASTER_ADDR", "value": master_addr},
        {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "PET_NNODES", "value": str(nodes)},
        rank("PET_NODE_RANK"),
    ]
    headless = common.manifest(
        "v1",
        "Service",
        common.object_meta(ctx, service),
        {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": common.selector_labels(ctx),
            "ports": [
                {"name": "torch", "port": MASTER_PORT, "targetPort": MASTER_PORT, "protocol": "TCP"}
            ],
        },
    )
    job = common.manifest(
        "batch/v1",
        "Job",
        common.object_meta(ctx, ctx.name, workload_object=True),
        {
            "completionMode": "Indexed",
            "completions": nodes,
            "parallelism": nodes,
            "backoffLimit": 0,
            "suspend": suspended(ctx),
            "template": common.pod_template(
                ctx,
                spec,
                container_name="pytorch",
                restart_policy="Never",
                ports=common.normalized_ports(spec),
                extra_env=torch_env,
                subdomain=service,
            ),
        },
    )
    return [headless, job]


def check(ctx: RenderContext) -> list[Problem]:
    spec = ctx.spec
    framework = spec.get("distributedFramework")
    problems: list[Problem] = []
    if framework not in FRAMEWORKS:
        problems.append(
            ("distributedFramework", "distributedFramework is required (PyTorch, TF or MPI)")
        )
        return problems
    if is_elastic(spec):
        lo, hi = elastic_bounds(spec)
        if not lo <= num_workers(spec) <= hi:
            problems.append(
                (
                    "numWorkers",
                    f"numWorkers must be between minReplicas ({lo}) and maxReplicas ({hi})",
                )
            )
        if not same_as_worker(spec):
            problems.append(
                (
                    "masterSpecSameAsWorker",
                    "elastic PyTorch (minReplicas/maxReplicas) runs workers only; "
                    "a separate master spec cannot apply",
                )
            )
        if is_native(ctx):
            problems.append(
                (
                    "minReplicas",
                    "elastic PyTorch needs the Kubeflow training operator; this cluster renders "
                    "PyTorch natively as a fixed-size Indexed Job",
                )
            )
    elif is_native(ctx) and not same_as_worker(spec):
        problems.append(
            (
                "masterSpecSameAsWorker",
                "this cluster renders PyTorch natively as an Indexed Job, whose pods share one "
                "spec: a separate master spec cannot apply",
            )
        )
    if not same_as_worker(spec) and spec.get("masterSpec"):
        master = master_spec(spec, framework)
        worker_problems = set(common.check_container_spec(ctx, spec))
        for field, message in common.check_container_spec(ctx, master, "masterSpec."):
            if (field.removeprefix("masterSpec."), message) not in worker_problems:
                problems.append((field, message))
        problems += common.revalidate_common(master, "masterSpec")
        problems += common.check_ports(
            common.normalized_ports(master), services=False, field="masterSpec.ports"
        )
    return problems
