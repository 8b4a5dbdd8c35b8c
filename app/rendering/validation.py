"""Validate a manifest as an API server would: :func:`validate_manifest` -> list of problems.

Three layers, because each misses what the next catches:

1. Built-in kinds against the official OpenAPI schemas shipped by ``kubernetes-validate``
   (Kubernetes :data:`KUBERNETES_VERSION`, strict: unknown fields are errors, as with
   ``kubectl --validate=strict``).
2. Custom kinds (Kubeflow's jobs, Kueue's queues) against their CRD's own ``openAPIV3Schema``
   (``crd_schemas.json``, derived from the pinned upstream modules by ``tools/crd-schemas.py``),
   made strict the way the API server's strict field validation is: an object with
   ``properties`` accepts no other field unless it preserves unknown fields. Their metadata and
   pod templates are also checked against the built-in schemas. CEL rules
   (``x-kubernetes-validations``) are not evaluated.
3. What the schemas leave to the API server's Go validation: name, label and annotation syntax and
   length (per kind: DNS-1035 Services, StatefulSets of at most 52 characters, Kubeflow jobs
   whose pod Services must fit 63...), quantity syntax, requests <= limits, extended resources,
   port names, volume references, restart policies per controller, selector vs template labels,
   tolerations, HPA bounds.

Schemas are loaded once per process and compiled validators cached per kind. Pure: reads only
schema files of installed packages; the simulated cluster backend reuses this module to refuse
objects.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.protocols import Validator
from referencing import Registry, Resource

from app.domain import kinds
from app.domain.quantity import quantity_value
from app.rendering import syntax

KUBERNETES_VERSION = "1.33"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"

_CONTROLLER_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "PodTemplate": ("template",),
}
# Restart policies each controller accepts in its pod template (None: field unset).
_RESTART_POLICIES: dict[str, frozenset[str | None]] = {
    "Deployment": frozenset({"Always", None}),
    "StatefulSet": frozenset({"Always", None}),
    "ReplicaSet": frozenset({"Always", None}),
    "DaemonSet": frozenset({"Always", None}),
    "Job": frozenset({"Never", "OnFailure"}),
    "CronJob": frozenset({"Never", "OnFailure"}),
}


# --- schema loading (once per process) ---


def _schema_dir() -> Any:
    return resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{KUBERNETES_VERSION}.0-local-strict"
    )


@functools.cache
def _registry() -> Registry[Any]:
    definitions = json.loads(_schema_dir().joinpath("_definitions.json").read_text())
    resource: Resource[Any] = Resource.from_contents(definitions)
    return resource @ Registry()


def _definition_validator(name: str) -> Validator:
    schema = {"$ref": f"{_DEFINITIONS_ID}#/$defs/{name}"}
    return Draft202012Validator(schema, registry=_registry())


@functools.cache
def _object_meta_validator() -> Validator:
    return _definition_validator("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


@functools.cache
def _pod_template_validator() -> Validator:
    return _definition_validator("io.k8s.api.core.v1.PodTemplateSpec")


@functools.cache
def _builtin_validator(api_version: str, kind: str) -> Validator | None:
    group, _, version = api_version.rpartition("/")
    # kubernetes-validate's file naming: "<kind>-<first part of the group>-<version>.json".
    stem = f"{group.split('.')[0]}-{version}" if group else version
    path = _schema_dir().joinpath(f"{kind.lower()}-{stem}.json")
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    if kind not in (schema.get("properties", {}).get("kind", {}).get("enum") or [kind]):
        return None
    return Draft202012Validator(schema, registry=_registry())


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind) -> openAPIV3Schema`` of the CRDs Runplane writes objects for, as
    ``tools/crd-schemas.py`` derived them from the pinned upstream modules, and KAI's Queue,
    whose schema the project keeps (``kai_schemas.json``, written from KAI's documented API)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name in ("crd_schemas.json", "kai_schemas.json"):
        text = resources.files("app.rendering").joinpath(name).read_text()
        for key, schema in json.loads(text)["schemas"].items():
            api_version, _, kind = key.rpartition("/")
            out[(api_version, kind)] = schema
    return out


def _strict(schema: Any) -> Any:
    """The API server prunes or (strict field validation) refuses fields a structural schema
    does not declare; jsonschema allows them unless told, so say it everywhere."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(api_version: str, kind: str) -> Validator | None:
    """A strict validator of a custom kind against its CRD's schema (None: not a custom kind)."""
    schema = _crd_schemas().get((api_version, kind))
    return Draft7Validator(_strict(schema)) if schema is not None else None


def preload() -> None:
    """Load every schema now (e.g. at start-up) rather than on the first validation."""
    _object_meta_validator()
    _pod_template_validator()
    for api_version, kind in (
        ("v1", "Service"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ):
        _builtin_validator(api_version, kind)
    for api_version, kind in _crd_schemas():
        crd_validator(api_version, kind)


# --- the entry points ---


def validate_manifests(objs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [problem for obj in objs for problem in validate_manifest(obj)]


def validate_manifest(obj: Mapping[str, Any]) -> list[str]:
    """Every problem the API server (plus the operator's webhook, for Kubeflow kinds) would
    report for ``obj``, each prefixed with ``Kind/name``; empty when it would be accepted."""
    if not isinstance(obj, Mapping):
        return ["object: must be a mapping"]
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    where = f"{kind}/{name}"
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [f"{where}: apiVersion and kind are required"]
    problems: list[str] = []
    custom = crd_validator(api_version, kind)
    if custom is not None:
        problems += _schema_errors(custom, obj)
        if isinstance(meta, Mapping):
            problems += _schema_errors(_object_meta_validator(), meta, "metadata")
    else:
        validator = _builtin_validator(api_version, kind)
        if validator is None:
            return [
                f"{where}: no schema for {api_version} {kind} in Kubernetes {KUBERNETES_VERSION}"
            ]
        problems += _schema_errors(validator, obj)
    if not problems:
        # Semantic checks assume the shapes the schema guarantees.
        problems += _semantic(obj, api_version, kind)
    return [f"{where}: {p}" for p in problems]


def _schema_errors(validator: Validator, instance: Any, prefix: str = "") -> list[str]:
    out = []
    for error in validator.iter_errors(instance):
        path = prefix
        for part in error.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        out.append(f"{path or '(root)'}: {error.message}")
    return out


# --- semantic checks ---


def _get(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _name_rule(kind: str) -> Callable[[str], str | None]:
    if kind == "Service":
        return syntax.dns1035_label_problem
    if kind == "StatefulSet":
        return lambda n: syntax.dns1123_label_problem(n, syntax.STATEFULSET_NAME_MAX)
    if kind in ("Job", "CronJob", "Namespace"):
        # Job pods carry the job name as a label value, and Indexed Job pods as hostname.
        return syntax.dns1123_label_problem
    return syntax.dns1123_subdomain_problem


def _semantic(obj: Mapping[str, Any], api_version: str, kind: str) -> list[str]:
    problems = _check_object_meta(obj.get("metadata") or {}, kind, "metadata")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        problems += _check_pod_spec(spec, "spec", restart_policies=None)
    path = _CONTROLLER_TEMPLATE_PATHS.get(kind)
    if path is not None:
        template = _get(obj, path)
        where = ".".join(path)
        if isinstance(template, Mapping):
            problems += _check_pod_template(template, where, _RESTART_POLICIES.get(kind))
        selector = _get(obj, ("spec", "selector", "matchLabels"))
        if kind in ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"):
            template_labels = _get(template, ("metadata", "labels")) or {}
            if not selector:
                problems.append("spec.selector: must select the pod template's labels")
            else:
                problems += _check_labels(selector, "spec.selector.matchLabels")
                if any(template_labels.get(k) != v for k, v in selector.items()):
                    problems.append(
                        "spec.template.metadata.labels: `selector` does not match template `labels`"
                    )
    if kind == "StatefulSet" and spec.get("serviceName"):
        problem = syntax.dns1123_label_problem(spec["serviceName"])
        if problem:
            problems.append(f"spec.serviceName: {problem}")
    if kind == "Job":
        problems += _check_job(spec)
    if kind == "Service":
        problems += _check_service(spec)
    if kind == "HorizontalPodAutoscaler":
        problems += _check_hpa(spec)
    found = kinds.lookup(api_version, kind)
    if found is not None and found.replica_specs:
        problems += _check_kubeflow(obj, found)
    for field in ("replicas", "completions", "parallelism", "backoffLimit"):
        value = spec.get(field) if isinstance(spec, Mapping) else None
        if isinstance(value, int) and value < 0:
            problems.append(f"spec.{field}: must be greater than or equal to 0")
    return problems


def _check_object_meta(meta: Mapping[str, Any], kind: str, where: str) -> list[str]:
    problems: list[str] = []
    name = meta.get("name")
    if name is None:
        problems.append(f"{where}.name: Required value")
    else:
        problem = _name_rule(kind)(name)
        if problem:
            problems.append(f"{where}.name: {name!r} {problem}")
    namespace = meta.get("namespace")
    if namespace is not None:
        problem = syntax.dns1123_label_problem(namespace)
        if problem:
            problems.append(f"{where}.namespace: {namespace!r} {problem}")
    problems += _check_labels(meta.get("labels") or {}, f"{where}.labels")
    problems += _check_annotations(meta.get("annotations") or {}, f"{where}.annotations")
    return problems


def _check_labels(labels: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for key, value in labels.items():
        problem = syntax.qualified_name_problem(key)
        if problem:
            problems.append(f"{where}: key {key!r} {problem}")
        problem = syntax.label_value_problem(value)
        if problem:
            problems.append(f"{where}[{key!r}]: value {value!r} {problem}")
    return problems


def _check_annotations(annotations: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for key in annotations:
        problem = syntax.qualified_name_problem(key)
        if problem:
            problems.append(f"{where}: key {key!r} {problem}")
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > syntax.ANNOTATIONS_TOTAL_MAX:
        problems.append(f"{where}: Too long: must have at most 262144 bytes")
    return problems


def _check_pod_template(
    template: Mapping[str, Any], where: str, restart_policies: frozenset[str | None] | None
) -> list[str]:
    meta = template.get("metadata") or {}
    problems = _check_labels(meta.get("labels") or {}, f"{where}.metadata.labels")
    problems += _check_annotations(meta.get("annotations") or {}, f"{where}.metadata.annotations")
    problems += _check_pod_spec(template.get("spec") or {}, f"{where}.spec", restart_policies)
    return problems


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers"):
        for i, c in enumerate(pod.get(field) or []):
            yield f"{field}[{i}]", c


def _check_pod_spec(
    pod: Mapping[str, Any], where: str, restart_policies: frozenset[str | None] | None
) -> list[str]:
    problems: list[str] = []
    if not pod.get("containers"):
        problems.append(f"{where}.containers: Required value")
    restart = pod.get("restartPolicy")
    if restart_policies is not None and restart not in restart_policies:
        allowed = sorted(p for p in restart_policies if p)
        problems.append(f"{where}.restartPolicy: {restart!r}: supported values: {allowed}")
    for field in ("priorityClassName", "schedulerName"):
        if pod.get(field):
            problem = syntax.dns1123_subdomain_problem(pod[field])
            if problem:
                problems.append(f"{where}.{field}: {problem}")
    for field in ("subdomain", "hostname"):
        if pod.get(field):
            problem = syntax.dns1123_label_problem(pod[field])
            if problem:
                problems.append(f"{where}.{field}: {problem}")

    volume_names: set[str] = set()
    for i, volume in enumerate(pod.get("volumes") or []):
        name = volume.get("name", "")
        problem = syntax.dns1123_label_problem(name)
        if problem:
            problems.append(f"{where}.volumes[{i}].name: {problem}")
        if name in volume_names:
            problems.append(f"{where}.volumes[{i}].name: Duplicate value: {name!r}")
        volume_names.add(name)
        sources = [k for k in volume if k != "name"]
        if len(sources) != 1:
            problems.append(f"{where}.volumes[{i}]: must specify exactly 1 volume type")
        claim = _get(volume, ("persistentVolumeClaim", "claimName"))
        if "persistentVolumeClaim" in volume:
            problem = syntax.dns1123_subdomain_problem(claim or "")
            if problem:
                problems.append(f"{where}.volumes[{i}].persistentVolumeClaim.claimName: {problem}")
        size = _get(volume, ("emptyDir", "sizeLimit"))
        problem = syntax.quantity_problem(size) if size is not None else None
        if problem:
            problems.append(f"{where}.volumes[{i}].emptyDir.sizeLimit: {problem}")

    names: set[str] = set()
    port_names: set[str] = set()
    has_cpu_or_memory = False
    has_hugepages = False
    for field, c in _containers(pod):
        at = f"{where}.{field}"
        name = c.get("name", "")
        problem = syntax.dns1123_label_problem(name)
        if problem:
            problems.append(f"{at}.name: {problem}")
        if name in names:
            problems.append(f"{at}.name: Duplicate value: {name!r}")
        names.add(name)
        image = c.get("image")
        if not image:
            problems.append(f"{at}.image: Required value")
        elif image != image.strip():
            problems.append(f"{at}.image: must not have leading or trailing whitespace")
        for j, port in enumerate(c.get("ports") or []):
            number = port.get("containerPort", 0)
            if not 1 <= number <= 65535:
                problems.append(f"{at}.ports[{j}].containerPort: must be between 1 and 65535")
            if port.get("name") is not None:
                problem = syntax.port_name_problem(port["name"])
                if problem:
                    problems.append(f"{at}.ports[{j}].name: {problem}")
                if port["name"] in port_names:
                    problems.append(f"{at}.ports[{j}].name: Duplicate value: {port['name']!r}")
                port_names.add(port["name"])
        for j, var in enumerate(c.get("env") or []):
            problem = syntax.env_name_problem(var.get("name", ""))
            if problem:
                problems.append(f"{at}.env[{j}].name: {problem}")
            if "value" in var and "valueFrom" in var:
                problems.append(f"{at}.env[{j}]: may not have both value and valueFrom")
        mount_paths: set[str] = set()
        for j, mount in enumerate(c.get("volumeMounts") or []):
            if mount.get("name") not in volume_names:
                problems.append(f"{at}.volumeMounts[{j}].name: Not found: {mount.get('name')!r}")
            path = mount.get("mountPath", "")
            if not path:
                problems.append(f"{at}.volumeMounts[{j}].mountPath: Required value")
            if path in mount_paths:
                problems.append(f"{at}.volumeMounts[{j}].mountPath: must be unique")
            mount_paths.add(path)
        res_problems, cpu_mem, huge = _check_resources(c.get("resources") or {}, f"{at}.resources")
        problems += res_problems
        has_cpu_or_memory = has_cpu_or_memory or cpu_mem
        has_hugepages = has_hugepages or huge
        for probe_field in ("readinessProbe", "livenessProbe", "startupProbe"):
            if c.get(probe_field) is not None:
                problems += _check_probe(c[probe_field], f"{at}.{probe_field}")
    if has_hugepages and not has_cpu_or_memory:
        problems.append(f"{where}: HugePages require cpu or memory")
    problems += _check_tolerations(pod.get("tolerations") or [], f"{where}.tolerations")
    problems += _check_affinity(pod.get("affinity") or {}, f"{where}.affinity")
    return problems


def _check_resources(res: Mapping[str, Any], where: str) -> tuple[list[str], bool, bool]:
    problems: list[str] = []
    requests: Mapping[str, Any] = res.get("requests") or {}
    limits: Mapping[str, Any] = res.get("limits") or {}
    values: dict[tuple[str, str], Any] = {}
    for part, amounts in (("requests", requests), ("limits", limits)):
        for name, amount in amounts.items():
            problem = syntax.resource_name_problem(name)
            if problem:
                problems.append(f"{where}.{part}[{name!r}]: {problem}")
            problem = syntax.quantity_problem(amount)
            if problem:
                problems.append(f"{where}.{part}[{name!r}]: {problem}")
                continue
            value = quantity_value(amount)
            values[(part, name)] = value
            if not syntax.is_standard_resource(name) and value % 1 != 0:
                problems.append(f"{where}.{part}[{name!r}]: must be an integer")
    for name in set(requests) | set(limits):
        request, limit = values.get(("requests", name)), values.get(("limits", name))
        if syntax.is_standard_resource(name) and not name.startswith("hugepages-"):
            if request is not None and limit is not None and request > limit:
                problems.append(
                    f"{where}.requests[{name!r}]: must be less than or equal to {name} limit"
                )
        elif name in requests and name not in limits:
            problems.append(f"{where}.limits[{name!r}]: Required value: must be set with requests")
        elif request is not None and limit is not None and request != limit:
            problems.append(f"{where}.requests[{name!r}]: must be equal to {name} limit")
    cpu_mem = any(k in ("cpu", "memory") for k in (*requests, *limits))
    huge = any(k.startswith("hugepages-") for k in (*requests, *limits))
    return problems, cpu_mem, huge


def _check_probe(probe: Mapping[str, Any], where: str) -> list[str]:
    handlers = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(k) is not None]
    if len(handlers) != 1:
        return [f"{where}: must specify exactly 1 handler type"]
    port = _get(probe, (handlers[0], "port"))
    problems = []
    if isinstance(port, int) and not 1 <= port <= 65535:
        problems.append(f"{where}.{handlers[0]}.port: must be between 1 and 65535")
    if isinstance(port, str):
        problem = syntax.port_name_problem(port)
        if problem:
            problems.append(f"{where}.{handlers[0]}.port: {problem}")
    return problems


def _check_tolerations(tolerations: Sequence[Mapping[str, Any]], where: str) -> list[str]:
    problems = []
    for i, tol in enumerate(tolerations):
        at = f"{where}[{i}]"
        key = tol.get("key") or ""
        operator = tol.get("operator") or "Equal"
        if key:
            problem = syntax.qualified_name_problem(key)
            if problem:
                problems.append(f"{at}.key: {problem}")
        elif operator != "Exists":
            problems.append(f"{at}.operator: must be Exists when `key` is empty")
        if operator not in ("Equal", "Exists"):
            problems.append(f"{at}.operator: Unsupported value: {operator!r}")
        if operator == "Exists" and tol.get("value"):
            problems.append(f"{at}.operator: value must be empty when `operator` is 'Exists'")
        elif tol.get("value"):
            problem = syntax.label_value_problem(tol["value"])
            if problem:
                problems.append(f"{at}.value: {problem}")
        if tol.get("tolerationSeconds") is not None and tol.get("effect") != "NoExecute":
            problems.append(f"{at}.effect: must be 'NoExecute' when `tolerationSeconds` is set")
        effect = tol.get("effect")
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            problems.append(f"{at}.effect: Unsupported value: {effect!r}")
    return problems


def _check_node_selector_requirements(
    requirements: Sequence[Mapping[str, Any]], where: str
) -> list[str]:
    problems = []
    for i, req in enumerate(requirements):
        at = f"{where}[{i}]"
        problem = syntax.qualified_name_problem(req.get("key", ""))
        if problem:
            problems.append(f"{at}.key: {problem}")
        operator = req.get("operator")
        values = req.get("values") or []
        if operator in ("In", "NotIn") and not values:
            problems.append(f"{at}.values: Required value: must be specified for {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            problems.append(f"{at}.values: may not be specified for {operator}")
        for j, value in enumerate(values):
            problem = syntax.label_value_problem(value)
            if problem:
                problems.append(f"{at}.values[{j}]: {problem}")
    return problems


def _check_affinity(affinity: Mapping[str, Any], where: str) -> list[str]:
    node = affinity.get("nodeAffinity") or {}
    problems = []
    required = _get(node, ("requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"))
    if required is not None and not required:
        problems.append(f"{where}.nodeAffinity.required...: must have at least one term")
    for i, term in enumerate(required or []):
        problems += _check_node_selector_requirements(
            term.get("matchExpressions") or [],
            f"{where}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
            f".nodeSelectorTerms[{i}].matchExpressions",
        )
    for i, pref in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        at = f"{where}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        if not 1 <= pref.get("weight", 0) <= 100:
            problems.append(f"{at}.weight: must be in the range 1-100")
        problems += _check_node_selector_requirements(
            _get(pref, ("preference", "matchExpressions")) or [],
            f"{at}.preference.matchExpressions",
        )
    return problems


def _check_job(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        problems.append("spec.completions: Required value: when completion mode is Indexed")
    if spec.get("selector") is not None and not spec.get("manualSelector"):
        problems.append("spec.selector: is generated by the Job controller unless manualSelector")
    return problems


def _check_service(spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    service_type = spec.get("type") or "ClusterIP"
    headless = spec.get("clusterIP") == "None"
    if service_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        problems.append(f"spec.type: Unsupported value: {service_type!r}")
    if headless and service_type != "ClusterIP":
        problems.append("spec.clusterIP: may only be 'None' for type ClusterIP")
    ports = spec.get("ports") or []
    if not ports and not headless and service_type != "ExternalName":
        problems.append("spec.ports: Required value")
    names: set[str] = set()
    numbers: set[tuple[int, str]] = set()
    for i, port in enumerate(ports):
        at = f"spec.ports[{i}]"
        name = port.get("name")
        if len(ports) > 1 and not name:
            problems.append(f"{at}.name: Required value")
        if name:
            problem = syntax.port_name_problem(name)
            if problem:
                problems.append(f"{at}.name: {problem}")
            if name in names:
                problems.append(f"{at}.name: Duplicate value: {name!r}")
            names.add(name)
        number = port.get("port", 0)
        if not 1 <= number <= 65535:
            problems.append(f"{at}.port: must be between 1 and 65535")
        key = (number, port.get("protocol") or "TCP")
        if key in numbers:
            problems.append(f"{at}: Duplicate value: port {number}/{key[1]}")
        numbers.add(key)
        target = port.get("targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            problems.append(f"{at}.targetPort: must be between 1 and 65535")
        if isinstance(target, str):
            problem = syntax.port_name_problem(target)
            if problem:
                problems.append(f"{at}.targetPort: {problem}")
        if port.get("nodePort") is not None and service_type not in ("NodePort", "LoadBalancer"):
            problems.append(f"{at}.nodePort: may not be used when `type` is {service_type!r}")
    problems += _check_labels(spec.get("selector") or {}, "spec.selector")
    return problems


def _check_hpa(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    lo = spec.get("minReplicas", 1)
    hi = spec.get("maxReplicas", 0)
    if lo < 1:
        problems.append("spec.minReplicas: must be greater than or equal to 1")
    if hi < lo:
        problems.append("spec.maxReplicas: must be greater than or equal to `minReplicas`")
    for i, metric in enumerate(spec.get("metrics") or []):
        source = metric.get(_METRIC_SOURCES.get(metric.get("type", ""), "")) or {}
        target = source.get("target") or {}
        at = f"spec.metrics[{i}]"
        if not source:
            problems.append(f"{at}: must populate the source matching `type`")
        for field in ("value", "averageValue"):
            if target.get(field) is not None:
                problem = syntax.quantity_problem(target[field])
                if problem:
                    problems.append(f"{at}.target.{field}: {problem}")
                elif quantity_value(target[field]) <= 0:
                    problems.append(f"{at}.target.{field}: must be positive")
        utilization = target.get("averageUtilization")
        if utilization is not None and utilization <= 0:
            problems.append(f"{at}.target.averageUtilization: must be greater than 0")
    return problems


_METRIC_SOURCES = {
    "Resource": "resource",
    "Pods": "pods",
    "Object": "object",
    "External": "external",
    "ContainerResource": "containerResource",
}


def _check_kubeflow(obj: Mapping[str, Any], kind: kinds.Kind) -> list[str]:
    """What the training / mpi operators' admission webhooks check."""
    replica_key, allowed = kind.replica_specs or "", kind.replica_types
    container, singletons = kind.container, kind.singletons
    problems: list[str] = []
    name = _get(obj, ("metadata", "name")) or ""
    problem = syntax.dns1035_label_problem(name)
    if problem:
        problems.append(f"metadata.name: {problem}")
    replicas: Mapping[str, Any] = _get(obj, ("spec", replica_key)) or {}
    if not replicas:
        problems.append(f"spec.{replica_key}: must have at least one replica type")
    for replica_type, replica in replicas.items():
        at = f"spec.{replica_key}.{replica_type}"
        if replica_type not in allowed:
            problems.append(f"{at}: unknown replica type (expected one of {sorted(allowed)})")
        count = replica.get("replicas", 1)
        if replica_type in singletons and count != 1:
            problems.append(f"{at}.replicas: must be 1")
        # The operator names each pod and its Service "<job>-<type>-<index>": a DNS-1035 label.
        longest = f"{name}-{replica_type.lower()}-{max(count - 1, 0)}"
        if len(longest) > syntax.DNS1123_LABEL_MAX:
            problems.append(
                f"metadata.name: pod/Service name {longest!r} would exceed 63 characters"
            )
        template = replica.get("template") or {}
        problems += _schema_errors(_pod_template_validator(), template, f"{at}.template")
        problems += _check_pod_template(template, f"{at}.template", None)
        containers = _get(template, ("spec", "containers")) or []
        if container and container not in [c.get("name") for c in containers]:
            problems.append(f"{at}.template.spec.containers: must include one named {container!r}")
    elastic = _get(obj, ("spec", "elasticPolicy"))
    if isinstance(elastic, Mapping):
        lo, hi = elastic.get("minReplicas"), elastic.get("maxReplicas")
        if lo is not None and hi is not None and lo > hi:
            problems.append("spec.elasticPolicy.minReplicas: must be no greater than maxReplicas")
        if lo is not None and lo < 1:
            problems.append("spec.elasticPolicy.minReplicas: must be at least 1")
    return problems
