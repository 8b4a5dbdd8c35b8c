"""Hypothesis strategies for render contexts.

``contexts(clean=True)`` draws only workloads that are renderable by construction (valid names,
consistent requests for the drawn scheduler); ``clean=False`` also draws the things check() must
refuse (odd label keys, GPU fractions without KAI, inconsistent master specs, arbitrary names).
Every spec goes through the spec model, as the API's would.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from app.domain.spec import SPEC_MODELS, WORKLOAD_TYPES, WorkloadType
from app.rendering import SCHEDULERS, RenderContext

RESERVED_PREFIXES = ("runplane.io/", "kai.scheduler/", "kueue.x-k8s.io/", "app.kubernetes.io/")

dns1035_names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,38}[a-z0-9])?\Z")
dns1123_labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?\Z")
short_dns_labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
subdomains = st.lists(short_dns_labels, min_size=1, max_size=3).map(".".join)
label_names = st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")
label_values = st.one_of(st.just(""), label_names)
label_keys = st.one_of(
    label_names, st.builds(lambda p, n: f"{p}/{n}", subdomains, label_names)
).filter(lambda k: not k.startswith(RESERVED_PREFIXES) and k not in ("gpu-fraction", "gpu-memory"))
port_names = st.from_regex(r"\A[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,7})?\Z").filter(
    lambda n: n not in ("serving", "jupyter", "tensorboard")
)
env_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,30}\Z")
paths = st.lists(short_dns_labels, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
images = st.from_regex(r"\A[a-z0-9]([a-z0-9./-]{0,40}[a-z0-9])?(:[a-zA-Z0-9._-]{1,20})?\Z")
text = st.text(max_size=40)
# In unclean mode each odd choice is rare, so that most drawn workloads are otherwise valid
# and a refusal check() misses cannot hide behind another refusal.
rarely = st.integers(0, 7).map(lambda n: n == 0)


@st.composite
def compute(draw: st.DrawFn, scheduler: str, clean: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        request = draw(st.floats(0, 64, allow_nan=False))
        out["cpuCoreRequest"] = request
        if draw(st.booleans()):
            out["cpuCoreLimit"] = request + draw(st.floats(0, 64, allow_nan=False))
    if draw(st.booleans()):
        request_mi = draw(st.integers(1, 1 << 20))
        out["cpuMemoryRequest"] = f"{request_mi}Mi"
        if draw(st.booleans()):
            out["cpuMemoryLimit"] = f"{request_mi + draw(st.integers(0, 1 << 20))}Mi"
    kai = scheduler == "kai"
    gpu = draw(st.sampled_from(["none", "devices", "portion", "memory"]))
    if gpu == "devices":
        out["gpuDevicesRequest"] = draw(st.integers(0, 16))
    elif gpu == "portion" and (kai or (not clean and draw(rarely))):
        out["gpuPortionRequest"] = draw(st.floats(0.01, 0.99))
    elif gpu == "memory" and (kai or (not clean and draw(rarely))):
        out["gpuMemoryRequest"] = draw(st.sampled_from(["512Mi", "10Gi", "1G", "20000M"]))
    if draw(st.booleans()):
        out["largeShmRequest"] = draw(st.booleans())
    resources = draw(
        st.lists(
            st.sampled_from(["example.com/fpga", "rdma/hca", "hugepages-2Mi", "vendor.io/x"]),
            unique=True,
            max_size=3,
        )
    )
    extended = []
    for name in resources:
        if name.startswith("hugepages-"):
            wild = not clean and draw(rarely)
            if not wild and "cpuCoreRequest" not in out and "cpuMemoryRequest" not in out:
                continue
            extended.append({"resource": name, "quantity": f"{draw(st.integers(1, 64))}Mi"})
        else:
            wild = not clean and draw(rarely)
            quantity = draw(st.sampled_from([1, "500m"])) if wild else draw(st.integers(0, 8))
            extended.append({"resource": name, "quantity": str(quantity)})
    if extended:
        out["extendedResources"] = extended
    return out


@st.composite
def tolerations(draw: st.DrawFn, clean: bool) -> list[dict[str, Any]]:
    out = []
    keys = draw(st.lists(label_keys, unique=True, max_size=3))
    for key in keys:
        tol: dict[str, Any] = {"key": key, "operator": draw(st.sampled_from(["Equal", "Exists"]))}
        if tol["operator"] == "Equal" or (not clean and draw(rarely)):
            if draw(st.booleans()):
                tol["value"] = draw(label_values)
        effect = draw(st.sampled_from([None, "NoSchedule", "PreferNoSchedule", "NoExecute"]))
        if effect:
            tol["effect"] = effect
        if (effect == "NoExecute" or (not clean and draw(rarely))) and draw(st.booleans()):
            tol["seconds"] = draw(st.integers(0, 86400))
        out.append(tol)
    if not clean and draw(rarely):
        out.append({"key": "", "operator": draw(st.sampled_from(["Equal", "Exists"]))})
    return out


@st.composite
def ports(draw: st.DrawFn, taken: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    names = draw(st.lists(port_names, unique=True, max_size=4))
    size = len(names) + len(taken)
    candidates = draw(st.lists(st.integers(1, 65535), unique=True, min_size=size, max_size=size))
    externals = [n for n in candidates if n not in taken][: len(names)]
    out = []
    for name, external in zip(names, externals, strict=True):
        port: dict[str, Any] = {
            "name": name,
            "container": draw(st.integers(1, 65535)),
            "serviceType": draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"])),
        }
        if draw(st.booleans()):
            port["external"] = external
        else:
            port["container"] = external
        out.append(port)
    return out


@st.composite
def common_spec(draw: st.DrawFn, scheduler: str, clean: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": draw(images)}
    if draw(st.booleans()):
        spec["imagePullPolicy"] = draw(st.sampled_from(["Always", "IfNotPresent", "Never"]))
    if draw(st.booleans()):
        spec["command"] = draw(st.lists(text, min_size=1, max_size=3))
    if draw(st.booleans()):
        spec["args"] = draw(st.lists(text, max_size=3))
    if draw(st.booleans()):
        spec["workingDir"] = draw(paths)
    env = draw(st.lists(env_names, unique=True, max_size=4))
    if env:
        spec["environmentVariables"] = [{"name": n, "value": draw(text)} for n in env]
    wild = not clean and draw(rarely)
    keys = st.one_of(label_keys, st.text(min_size=1, max_size=20)) if wild else label_keys
    values = st.one_of(label_values, text) if wild else label_values
    if draw(st.booleans()):
        spec["labels"] = draw(st.dictionaries(keys, values, max_size=4))
    if draw(st.booleans()):
        spec["annotations"] = draw(st.dictionaries(keys, text, max_size=4))
    if draw(st.booleans()):
        spec["compute"] = draw(compute(scheduler, clean))
    storage: dict[str, Any] = {}
    mount_paths = draw(st.lists(paths.filter(lambda p: p != "/dev/shm"), unique=True, max_size=4))
    for i, path in enumerate(mount_paths):
        if draw(st.booleans()):
            storage.setdefault("pvc", []).append(
                {"claimName": f"claim-{i}", "path": path, "readOnly": draw(st.booleans())}
            )
        else:
            storage.setdefault("hostPath", []).append(
                {"name": f"h{i}", "path": draw(paths), "mountPath": path}
            )
    if storage:
        spec["storage"] = storage
    pools = st.one_of(label_names, text) if not clean and draw(rarely) else label_names
    if draw(st.booleans()):
        spec["nodePools"] = draw(st.lists(pools.filter(bool), min_size=1, max_size=3))
    if draw(st.booleans()):
        spec["nodeType"] = draw(label_names)
    tols = draw(tolerations(clean))
    if tols:
        spec["tolerations"] = tols
    if draw(st.booleans()):
        uid = draw(st.integers(0, 65535))
        security: dict[str, Any] = {"runAsUid": uid, "runAsGid": draw(st.integers(0, 65535))}
        if uid or (not clean and draw(rarely)):
            security["runAsNonRoot"] = draw(st.booleans())
        security["allowPrivilegeEscalation"] = draw(st.booleans())
        spec["security"] = security
    if draw(st.booleans()):
        spec["priorityClass"] = draw(subdomains)
    if draw(st.booleans()):
        spec["preemptibility"] = draw(st.sampled_from(["preemptible", "non-preemptible"]))
    return spec


@st.composite
def type_spec(
    draw: st.DrawFn, workload_type: WorkloadType, scheduler: str, native: bool, clean: bool
) -> dict[str, Any]:
    spec = draw(common_spec(scheduler, clean))
    if workload_type == "interactive":
        spec["ports"] = draw(ports())
        if draw(st.booleans()):
            spec["tool"] = draw(st.sampled_from(["jupyter", "tensorboard", "none"]))
        clash = not clean and draw(rarely)  # a user port taking the tool's Service port
        if not clash and spec.get("tool") in ("jupyter", "tensorboard"):
            number = 8888 if spec["tool"] == "jupyter" else 6006
            spec["ports"] = [
                p for p in spec["ports"] if p.get("external", p["container"]) != number
            ]
    elif workload_type == "training":
        spec["ports"] = draw(ports())
        completions = draw(st.integers(1, 1000))
        spec["completions"] = completions
        if draw(st.booleans()):
            spec["parallelism"] = draw(st.integers(1, completions))
        if draw(st.booleans()):
            spec["backoffLimit"] = draw(st.integers(0, 1000))
        if draw(st.booleans()):
            spec["autoDeletionTimeAfterCompletionSeconds"] = draw(st.integers(0, 10**6))
    elif workload_type == "distributed":
        framework = draw(st.sampled_from(["PyTorch", "TF", "MPI"]))
        spec["distributedFramework"] = framework
        workers = draw(st.integers(1, 64))
        spec["numWorkers"] = workers
        if framework == "MPI" and draw(st.booleans()):
            spec["slotsPerWorker"] = draw(st.integers(1, 1024))
        if draw(st.booleans()):
            spec["cleanPodPolicy"] = draw(st.sampled_from(["Running", "All", "None"]))
        pytorch_native = native and framework == "PyTorch"
        wild = not clean and draw(rarely)
        elastic = framework == "PyTorch" and draw(st.booleans()) and (wild or not pytorch_native)
        if elastic:
            if not wild:
                spec["minReplicas"] = draw(st.integers(1, workers))
                spec["maxReplicas"] = draw(st.integers(workers, 128))
            else:
                lo = draw(st.integers(1, 128))
                spec["minReplicas"] = lo
                spec["maxReplicas"] = draw(st.integers(lo, 128))
        separate_master = draw(st.booleans()) and (wild or not (elastic or pytorch_native))
        if separate_master:
            spec["masterSpecSameAsWorker"] = False
            master: dict[str, Any] = {}
            if draw(st.booleans()):
                master["image"] = draw(images)
            if draw(st.booleans()):
                master["labels"] = draw(st.dictionaries(label_keys, label_values, max_size=2))
            if draw(st.booleans()):
                master["environmentVariables"] = [{"name": "ROLE", "value": "master"}]
            if draw(st.booleans()):
                if not wild:
                    request = draw(st.floats(0, 8, allow_nan=False))
                    master["compute"] = {"cpuCoreRequest": request, "cpuCoreLimit": request + 1}
                else:
                    master["compute"] = draw(compute(scheduler, clean))
            spec["masterSpec"] = master
    else:
        serving = draw(st.integers(1, 65535))
        spec["servingPort"] = {
            "container": serving,
            "protocol": draw(st.sampled_from(["http", "grpc"])),
        }
        wild = not clean and draw(rarely)
        spec["ports"] = draw(ports(frozenset() if wild else frozenset({serving})))
        lo = draw(st.integers(0 if wild else 1, 10))
        hi = draw(st.integers(max(lo, 1), 20))
        auto: dict[str, Any] = {"minReplicas": lo, "maxReplicas": hi}
        if hi > lo:
            metric = draw(
                st.sampled_from(["cpu-utilization", "concurrency", "throughput", "latency"])
            )
            auto["metric"] = metric
            auto["metricThreshold"] = draw(st.floats(0.001, 10000))
            if not wild and metric == "cpu-utilization":
                compute_spec = spec.setdefault("compute", {})
                compute_spec["cpuCoreRequest"] = max(compute_spec.get("cpuCoreRequest", 0), 0.1)
                if compute_spec.get("cpuCoreLimit", 1) < compute_spec["cpuCoreRequest"]:
                    compute_spec["cpuCoreLimit"] = compute_spec["cpuCoreRequest"]
        spec["autoscaling"] = auto
    model = SPEC_MODELS[workload_type].model_validate(spec)
    return model.model_dump(exclude_none=True, by_alias=True)


@st.composite
def contexts(
    draw: st.DrawFn, clean: bool = True, workload_type: WorkloadType | None = None
) -> RenderContext:
    wtype: WorkloadType = (
        workload_type if workload_type is not None else draw(st.sampled_from(WORKLOAD_TYPES))
    )
    scheduler = draw(st.sampled_from(SCHEDULERS))
    native = draw(st.booleans())
    wild = not clean and draw(rarely)
    names = st.one_of(dns1035_names, st.text(min_size=1, max_size=45)) if wild else dns1035_names
    project = draw(dns1123_labels)
    return RenderContext(
        workload_id=str(draw(st.uuids())),
        name=draw(names),
        project=project,
        namespace=f"runplane-{project}"[:63].rstrip("-"),
        workload_type=wtype,
        spec=draw(type_spec(wtype, scheduler, native, clean)),
        scheduler=scheduler,
        queue=draw(st.one_of(st.none(), dns1123_labels)),
        stopped=draw(st.booleans()),
        pytorch_native=native,
    )
