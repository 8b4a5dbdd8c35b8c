"""What each spec field becomes, type by type (the golden files show whole objects)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.rendering import RenderContext, render
from tests.rendering.cases import FULL_COMMON, IMAGE, ctx


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in manifests:
        out.setdefault(m["kind"], m)
    return out


def only_container(template: dict[str, Any]) -> dict[str, Any]:
    containers = template["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- common mapping ---


def test_common_fields_map_to_the_container_and_pod() -> None:
    job = render(ctx("training", FULL_COMMON))[0]
    pod = job["spec"]["template"]["spec"]
    c = only_container(job["spec"]["template"])
    assert c["image"] == IMAGE
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["command"] == ["python", "train.py"]
    assert c["args"] == ["--epochs", "10"]
    assert c["workingDir"] == "/workspace"
    assert env_of(c) == {"NCCL_DEBUG": "INFO", "EMPTY": ""}
    assert c["resources"] == {
        "requests": {"cpu": "3500m", "memory": "16Gi", "rdma/hca": "1"},
        "limits": {"cpu": "8", "memory": "32Gi", "rdma/hca": "1", "nvidia.com/gpu": "2"},
    }
    assert c["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True}
    assert pod["priorityClassName"] == "train"
    assert pod["tolerations"][1] == {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    }
    assert {v["name"]: v for v in pod["volumes"]}["dshm"] == {
        "name": "dshm",
        "emptyDir": {"medium": "Memory"},
    }
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "pvc-0", "mountPath": "/data", "readOnly": True} in c["volumeMounts"]
    labels = job["metadata"]["labels"]
    assert labels["team"] == "vision"
    assert labels["kai.scheduler/preemptibility"] == "preemptible"
    assert job["metadata"]["annotations"] == {"example.com/owner": "alice@example.com"}
    assert job["spec"]["template"]["metadata"]["annotations"] == job["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("cores", "quantity"), [(0.5, "500m"), (2, "2"), (2.0, "2"), (0.001, "1m"), (1.25, "1250m")]
)
def test_cpu_cores_render_as_canonical_quantities(cores: float, quantity: str) -> None:
    job = render(ctx("training", {"image": IMAGE, "compute": {"cpuCoreRequest": cores}}))[0]
    assert only_container(job["spec"]["template"])["resources"]["requests"]["cpu"] == quantity


def test_node_pools_and_type_use_the_configured_label_keys() -> None:
    spec = {"image": IMAGE, "nodePools": ["a", "b", "a"], "nodeType": "t4"}
    job = render(
        ctx(
            "training",
            spec,
            node_pool_label_key="pool.example.com/name",
            node_type_label_key="gpu.example.com/model",
        )
    )[0]
    node = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    term = node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == [
        {
            "matchExpressions": [
                {"key": "pool.example.com/name", "operator": "In", "values": ["a", "b"]},
                {"key": "gpu.example.com/model", "operator": "In", "values": ["t4"]},
            ]
        }
    ]
    weights = [p["weight"] for p in node["preferredDuringSchedulingIgnoredDuringExecution"]]
    assert weights == [100, 99]


def test_one_pool_or_a_node_type_alone_needs_no_preference() -> None:
    for spec in ({"nodeType": "t4"}, {"nodePools": ["a"]}):
        job = render(ctx("training", {"image": IMAGE, **spec}))[0]
        node = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        assert list(node) == ["requiredDuringSchedulingIgnoredDuringExecution"]


def test_no_affinity_without_pools_or_type() -> None:
    job = render(ctx("training", {"image": IMAGE}))[0]
    assert "affinity" not in job["spec"]["template"]["spec"]


def test_manifests_share_nothing_with_the_spec_or_each_other() -> None:
    context = ctx("distributed", {**FULL_COMMON, "distributedFramework": "PyTorch"})
    before = copy.deepcopy(context.spec)
    manifests = render(context)
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict | list):
            assert id(node) not in seen, "a dict or list appears twice"
            seen.add(id(node))
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(manifests)

    def walk_spec(node: Any) -> None:
        if isinstance(node, dict | list):
            assert id(node) not in seen, "a manifest aliases the spec"
            for child in node.values() if isinstance(node, dict) else node:
                walk_spec(child)

    walk_spec(context.spec)
    manifests[0]["metadata"]["labels"]["team"] = "changed"
    assert context.spec == before


def test_queue_defaults_to_the_project() -> None:
    job = render(ctx("training", {"image": IMAGE}, scheduler="kueue"))[0]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "vision"
    job = render(ctx("training", {"image": IMAGE}, scheduler="kueue", queue="q1"))[0]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "q1"


# --- schedulers ---


def test_kai_renders_scheduler_name_queue_and_fraction() -> None:
    spec = {"image": IMAGE, "compute": {"gpuPortionRequest": 0.5}}
    sts = by_kind(render(ctx("interactive", spec, scheduler="kai", queue="research")))[
        "StatefulSet"
    ]
    template = sts["spec"]["template"]
    assert template["spec"]["schedulerName"] == "kai-scheduler"
    assert template["metadata"]["labels"]["kai.scheduler/queue"] == "research"
    assert sts["metadata"]["labels"]["kai.scheduler/queue"] == "research"
    assert template["metadata"]["annotations"] == {"gpu-fraction": "0.5"}
    assert "resources" not in only_container(template)


@pytest.mark.parametrize(
    ("quantity", "mib"), [("10Gi", "10240"), ("1G", "954"), ("1", "1"), ("0", "1")]
)
def test_kai_gpu_memory_is_in_mib_rounded_up(quantity: str, mib: str) -> None:
    spec = {"image": IMAGE, "compute": {"gpuMemoryRequest": quantity}}
    job = render(ctx("training", spec, scheduler="kai"))[0]
    assert job["spec"]["template"]["metadata"]["annotations"] == {"gpu-memory": mib}


def test_kueue_labels_the_owner_and_suspends_jobs() -> None:
    job = render(ctx("training", {"image": IMAGE}, scheduler="kueue"))[0]
    assert job["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    assert "schedulerName" not in job["spec"]["template"]["spec"]
    sts = by_kind(render(ctx("interactive", {"image": IMAGE}, scheduler="kueue")))["StatefulSet"]
    # Pod-based integrations (StatefulSet, Deployment) read the label on the pods too.
    assert sts["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "vision"
    assert sts["spec"]["replicas"] == 1


def test_no_scheduler_renders_no_scheduler_labels() -> None:
    job = render(ctx("training", {"image": IMAGE}))[0]
    labels = job["metadata"]["labels"]
    assert not [k for k in labels if k.startswith(("kai.", "kueue."))]
    assert job["spec"]["suspend"] is False


# --- interactive ---


def test_interactive_without_ports_is_a_lone_statefulset() -> None:
    manifests = render(ctx("interactive", {"image": IMAGE}))
    assert [m["kind"] for m in manifests] == ["StatefulSet"]
    assert manifests[0]["spec"]["serviceName"] == "resnet"
    assert manifests[0]["spec"]["template"]["spec"]["restartPolicy"] == "Always"


@pytest.mark.parametrize(("tool", "port"), [("jupyter", 8888), ("tensorboard", 6006)])
def test_tools_expose_their_port(tool: str, port: int) -> None:
    manifests = render(ctx("interactive", {"image": IMAGE, "tool": tool}))
    service = by_kind(manifests)["Service"]
    assert service["metadata"]["name"] == "resnet"
    assert service["spec"]["ports"] == [
        {"name": tool, "port": port, "targetPort": port, "protocol": "TCP"}
    ]


def test_a_tool_port_already_listed_is_not_duplicated() -> None:
    spec = {
        "image": IMAGE,
        "tool": "jupyter",
        "ports": [{"name": "lab", "container": 8888, "serviceType": "NodePort"}],
    }
    manifests = render(ctx("interactive", spec))
    assert [m["metadata"]["name"] for m in manifests] == ["resnet-nodeport", "resnet"]


def test_each_container_port_is_declared_once() -> None:
    spec = {
        "image": IMAGE,
        "ports": [
            {"name": "http", "container": 8080},
            {"name": "http-public", "container": 8080, "serviceType": "NodePort"},
            {"name": "metrics", "container": 9090},
        ],
    }
    sts = by_kind(render(ctx("interactive", spec)))["StatefulSet"]
    assert only_container(sts["spec"]["template"])["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]


def test_read_only_volumes_are_mounted_read_only() -> None:
    spec = {
        "image": IMAGE,
        "storage": {
            "pvc": [{"claimName": "data", "path": "/data", "readOnly": True}],
            "hostPath": [
                {"name": "models", "path": "/srv/models", "mountPath": "/models", "readOnly": True},
                {"name": "scratch", "path": "/srv/scratch", "mountPath": "/scratch"},
            ],
        },
    }
    pod = render(ctx("training", spec))[0]["spec"]["template"]
    assert only_container(pod)["volumeMounts"] == [
        {"name": "pvc-0", "mountPath": "/data", "readOnly": True},
        {"name": "hostpath-0", "mountPath": "/models", "readOnly": True},
        {"name": "hostpath-1", "mountPath": "/scratch"},
    ]


def test_stopped_interactive_scales_to_zero() -> None:
    sts = by_kind(render(ctx("interactive", {"image": IMAGE}, stopped=True)))["StatefulSet"]
    assert sts["spec"]["replicas"] == 0


# --- training ---


def test_training_defaults() -> None:
    job = render(ctx("training", {"image": IMAGE}))[0]
    assert job["apiVersion"] == "batch/v1"
    assert job["spec"]["completions"] == 1
    assert job["spec"]["backoffLimit"] == 6
    assert "parallelism" not in job["spec"]
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_training_fields() -> None:
    spec = {
        "image": IMAGE,
        "completions": 5,
        "parallelism": 2,
        "backoffLimit": 0,
        "autoDeletionTimeAfterCompletionSeconds": 0,
    }
    job = render(ctx("training", spec, stopped=True))[0]
    assert job["spec"]["completions"] == 5
    assert job["spec"]["parallelism"] == 2
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 0
    assert job["spec"]["suspend"] is True


# --- distributed ---


def replicas(obj: dict[str, Any]) -> dict[str, Any]:
    key = next(k for k in obj["spec"] if k.endswith("ReplicaSpecs"))
    return dict(obj["spec"][key])


@pytest.mark.parametrize(
    ("framework", "api_version", "kind", "master", "containers"),
    [
        ("PyTorch", "kubeflow.org/v1", "PyTorchJob", "Master", ("pytorch", "pytorch")),
        ("TF", "kubeflow.org/v1", "TFJob", "Chief", ("tensorflow", "tensorflow")),
        ("MPI", "kubeflow.org/v2beta1", "MPIJob", "Launcher", ("mpi-launcher", "mpi-worker")),
    ],
)
def test_distributed_frameworks(
    framework: str, api_version: str, kind: str, master: str, containers: tuple[str, str]
) -> None:
    spec = {
        "image": IMAGE,
        "distributedFramework": framework,
        "numWorkers": 3,
        "cleanPodPolicy": "Running",
    }
    (obj,) = render(ctx("distributed", spec))
    assert (obj["apiVersion"], obj["kind"]) == (api_version, kind)
    reps = replicas(obj)
    assert list(reps) == [master, "Worker"]
    assert reps[master]["replicas"] == 1
    assert reps["Worker"]["replicas"] == 3
    assert only_container(reps[master]["template"])["name"] == containers[0]
    assert only_container(reps["Worker"]["template"])["name"] == containers[1]
    assert reps[master]["template"]["metadata"]["labels"]["runplane.io/role"] == master.lower()
    assert obj["spec"]["runPolicy"] == {
        "cleanPodPolicy": "Running",
        "backoffLimit": 6,
        "suspend": False,
    }


def test_master_spec_merges_over_the_workers() -> None:
    spec = {
        "image": IMAGE,
        "distributedFramework": "PyTorch",
        "compute": {"gpuDevicesRequest": 4, "cpuCoreRequest": 8},
        "environmentVariables": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "masterSpecSameAsWorker": False,
        "masterSpec": {
            "compute": {"gpuDevicesRequest": 0},
            "environmentVariables": [{"name": "C", "value": "3"}],
        },
    }
    reps = replicas(render(ctx("distributed", spec))[0])
    master = only_container(reps["Master"]["template"])
    worker = only_container(reps["Worker"]["template"])
    assert master["resources"] == {"requests": {"cpu": "8"}}  # compute merged key by key
    assert env_of(master) == {"C": "3"}  # lists replaced
    assert worker["resources"] == {"requests": {"cpu": "8"}, "limits": {"nvidia.com/gpu": "4"}}
    assert env_of(worker) == {"A": "1", "B": "2"}


def test_master_spec_is_ignored_when_same_as_worker() -> None:
    spec = {
        "image": IMAGE,
        "distributedFramework": "TF",
        "masterSpec": {"image": "other:1"},
    }
    reps = replicas(render(ctx("distributed", spec))[0])
    assert only_container(reps["Chief"]["template"])["image"] == IMAGE


def test_mpi_launcher_runs_the_command_without_gpus() -> None:
    spec = {
        "image": IMAGE,
        "distributedFramework": "MPI",
        "command": ["mpirun", "python", "train.py"],
        "compute": {"gpuDevicesRequest": 1, "cpuCoreRequest": 1},
        "slotsPerWorker": 4,
    }
    obj = render(ctx("distributed", spec))[0]
    reps = replicas(obj)
    launcher = only_container(reps["Launcher"]["template"])
    worker = only_container(reps["Worker"]["template"])
    assert launcher["command"] == ["mpirun", "python", "train.py"]
    assert launcher["resources"] == {"requests": {"cpu": "1"}}
    assert "command" not in worker
    assert worker["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert obj["spec"]["slotsPerWorker"] == 4


def test_elastic_pytorch_has_workers_only() -> None:
    spec = {"image": IMAGE, "distributedFramework": "PyTorch", "numWorkers": 2, "maxReplicas": 6}
    obj = render(ctx("distributed", spec))[0]
    assert obj["spec"]["elasticPolicy"] == {
        "rdzvBackend": "c10d",
        "minReplicas": 2,
        "maxReplicas": 6,
    }
    assert list(replicas(obj)) == ["Worker"]


def test_native_pytorch_is_an_indexed_job_with_torchrun_env() -> None:
    spec = {
        "image": IMAGE,
        "distributedFramework": "PyTorch",
        "numWorkers": 3,
        "environmentVariables": [{"name": "MASTER_PORT", "value": "23456"}],
    }
    service, job = render(ctx("distributed", spec, pytorch_native=True, stopped=True))
    assert service["kind"] == "Service"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {
        "runplane.io/workload-id": job["metadata"]["labels"]["runplane.io/workload-id"]
    }
    assert job["kind"] == "Job"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    assert job["spec"]["suspend"] is True
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == "resnet"
    env = env_of(only_container(job["spec"]["template"]))
    index = {
        "fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        }
    }
    assert env["MASTER_ADDR"] == "resnet-0.resnet"
    assert env["MASTER_PORT"] == "23456"  # the user's value wins
    assert env["WORLD_SIZE"] == env["PET_NNODES"] == "4"
    assert env["NODE_RANK"] == env["PET_NODE_RANK"] == index


def test_native_setting_leaves_other_frameworks_alone() -> None:
    spec = {"image": IMAGE, "distributedFramework": "TF"}
    (obj,) = render(ctx("distributed", spec, pytorch_native=True))
    assert obj["kind"] == "TFJob"


# --- inference ---


def test_inference_http() -> None:
    spec = {"image": IMAGE, "servingPort": {"container": 8000}}
    manifests = render(ctx("inference", spec, inference_probe_path="/healthz"))
    assert [m["kind"] for m in manifests] == ["Service", "Deployment"]
    service, deployment = manifests
    assert service["spec"]["ports"] == [
        {
            "name": "serving",
            "port": 8000,
            "targetPort": 8000,
            "protocol": "TCP",
            "appProtocol": "http",
        }
    ]
    c = only_container(deployment["spec"]["template"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}
    assert deployment["spec"]["replicas"] == 1


def test_inference_grpc_probe() -> None:
    spec = {"image": IMAGE, "servingPort": {"container": 9000, "protocol": "grpc"}}
    deployment = by_kind(render(ctx("inference", spec)))["Deployment"]
    assert only_container(deployment["spec"]["template"])["readinessProbe"]["grpc"] == {
        "port": 9000
    }


@pytest.mark.parametrize(
    ("metric", "threshold", "expected"),
    [
        (
            "cpu-utilization",
            65.4,
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 65},
                },
            },
        ),
        (
            "concurrency",
            4,
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "runplane_concurrency"},
                    "target": {"type": "AverageValue", "averageValue": "4"},
                },
            },
        ),
        (
            "throughput",
            2.5,
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "runplane_throughput"},
                    "target": {"type": "AverageValue", "averageValue": "2500m"},
                },
            },
        ),
        (
            "latency",
            300,
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "runplane_latency_milliseconds"},
                    "target": {"type": "AverageValue", "averageValue": "300"},
                },
            },
        ),
    ],
)
def test_inference_hpa_metrics(metric: str, threshold: float, expected: dict[str, Any]) -> None:
    spec = {
        "image": IMAGE,
        "servingPort": {"container": 8000},
        "compute": {"cpuCoreRequest": 1},
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 7,
            "metric": metric,
            "metricThreshold": threshold,
        },
    }
    kinds = by_kind(render(ctx("inference", spec)))
    hpa = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resnet",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 7)
    assert hpa["spec"]["metrics"] == [expected]
    assert kinds["Deployment"]["spec"]["replicas"] == 2


def test_inference_without_scaling_range_has_no_hpa() -> None:
    spec = {
        "image": IMAGE,
        "servingPort": {"container": 8000},
        "autoscaling": {"minReplicas": 3, "maxReplicas": 3},
    }
    kinds = by_kind(render(ctx("inference", spec)))
    assert "HorizontalPodAutoscaler" not in kinds
    assert kinds["Deployment"]["spec"]["replicas"] == 3


def test_stopped_inference_has_zero_replicas_and_keeps_the_inert_hpa() -> None:
    spec = {
        "image": IMAGE,
        "servingPort": {"container": 8000},
        "autoscaling": {
            "minReplicas": 1,
            "maxReplicas": 3,
            "metric": "concurrency",
            "metricThreshold": 1,
        },
    }
    kinds = by_kind(render(ctx("inference", spec, stopped=True)))
    # An HPA does not scale a Deployment with zero replicas (ScalingDisabled), so a stop and a
    # resume change the Deployment's replicas and nothing else.
    assert set(kinds) == {"Service", "Deployment", "HorizontalPodAutoscaler"}
    assert kinds["Deployment"]["spec"]["replicas"] == 0


def test_render_context_is_immutable() -> None:
    context = ctx("training", {"image": IMAGE})
    with pytest.raises(AttributeError):
        context.name = "other"  # type: ignore[misc]
    assert isinstance(context, RenderContext)
