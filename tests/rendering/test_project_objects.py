"""A project's own objects, rendered from the project alone, valid against Kueue v0.17.0's CRDs,
the KAI Queue schema the project keeps, and Kubernetes' own schemas."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.domain.quota import Quota, ResourceQuota
from app.rendering.context import Scheduler
from app.rendering.project import ProjectContext, project_objects, render_project, shared
from app.rendering.validation import validate_manifest, validate_manifests

D = Decimal
GI = 1024**3
FULL = Quota(
    gpu=ResourceQuota(D("2.5"), D(8), D(3)),
    cpu=ResourceQuota(D("0.5"), None, D(1)),
    memory=ResourceQuota(D(64 * GI), D(128 * GI), D(1)),
)
QUOTAS = {
    "none at all": Quota(),
    "deserved only": Quota(gpu=ResourceQuota(D(4))),
    "every field": FULL,
    "nothing deserved": Quota(gpu=ResourceQuota(D(0), D(2), D(0))),
}


def ctx(scheduler: Scheduler, quota: Quota = FULL, queue: str = "gold") -> ProjectContext:
    return ProjectContext(
        name="team-a", namespace="runplane-team-a", queue=queue, scheduler=scheduler, quota=quota
    )


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("scheduler", ["none", "kai", "kueue"])
@pytest.mark.parametrize("quota", list(QUOTAS.values()), ids=list(QUOTAS))
def test_every_schedulers_objects_are_valid(scheduler: Scheduler, quota: Quota) -> None:
    objects = project_objects(ctx(scheduler, quota))
    assert validate_manifests(objects) == []
    assert objects[0]["kind"] == "Namespace"
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "runplane"
    # Deterministic: the same project, the same objects.
    assert project_objects(ctx(scheduler, quota)) == objects


def test_kueue_a_cluster_queue_in_one_cohort_and_a_local_queue_the_workloads_name() -> None:
    objects = project_objects(ctx("kueue"))
    (flavor,) = of_kind(objects, "ResourceFlavor")
    (cluster_queue,) = of_kind(objects, "ClusterQueue")
    (local_queue,) = of_kind(objects, "LocalQueue")
    assert flavor["metadata"]["name"] == "runplane"
    assert "runplane.io/project" not in flavor["metadata"]["labels"]  # every project's
    spec = cluster_queue["spec"]
    assert spec["cohortName"] == "runplane"
    assert spec["preemption"]["reclaimWithinCohort"] == "Any"
    (group,) = spec["resourceGroups"]
    assert group["coveredResources"] == ["nvidia.com/gpu", "cpu", "memory"]
    (flavor_quota,) = group["flavors"]
    assert flavor_quota["resources"] == [
        {"name": "nvidia.com/gpu", "nominalQuota": "2.5", "borrowingLimit": "5.5"},
        {"name": "cpu", "nominalQuota": "0.5"},  # no limit: borrows without a cap
        {"name": "memory", "nominalQuota": str(64 * GI), "borrowingLimit": str(64 * GI)},
    ]
    assert spec["fairSharing"] == {"weight": "3"}
    assert local_queue["metadata"] == {
        "name": "gold",
        "namespace": "runplane-team-a",
        "labels": {"app.kubernetes.io/managed-by": "runplane", "runplane.io/project": "team-a"},
    }
    assert local_queue["spec"] == {"clusterQueue": cluster_queue["metadata"]["name"]}


def test_kueue_a_resource_left_out_gets_more_than_any_cluster() -> None:
    (cluster_queue,) = of_kind(render_project(ctx("kueue", Quota())), "ClusterQueue")
    resources = cluster_queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
    assert [r["nominalQuota"] for r in resources] == ["1M", "1G", "1Ei"]
    assert all("borrowingLimit" not in r for r in resources)


def test_kai_a_queue_under_the_parent_in_kais_units() -> None:
    objects = project_objects(ctx("kai"))
    queue, parent = of_kind(objects, "Queue")
    assert queue["metadata"]["name"] == "gold"  # what kai.scheduler/queue names
    assert queue["spec"]["parentQueue"] == parent["metadata"]["name"] == "runplane"
    assert queue["spec"]["resources"] == {
        "gpu": {"quota": 2.5, "limit": 8, "overQuotaWeight": 3},
        "cpu": {"quota": 500, "limit": -1, "overQuotaWeight": 1},  # millicores; no cap
        "memory": {"quota": 68720, "limit": 137439, "overQuotaWeight": 1},  # MB, rounded up
    }
    unlimited = {"quota": -1, "limit": -1, "overQuotaWeight": 1}
    assert parent["spec"]["resources"] == dict.fromkeys(("gpu", "cpu", "memory"), unlimited)
    (left_out,) = of_kind(render_project(ctx("kai", Quota())), "Queue")
    assert left_out["spec"]["resources"]["gpu"] == unlimited


def test_the_kai_schema_refuses_what_kai_would() -> None:
    (queue,) = of_kind(render_project(ctx("kai")), "Queue")
    bad = {**queue, "spec": {**queue["spec"], "resources": {"gpu": {"quota": -2}}}}
    assert validate_manifest(bad)
    typo = {**queue, "spec": {**queue["spec"], "parentQeue": "x"}}
    assert validate_manifest(typo)


def test_none_a_resource_quota_at_the_cap() -> None:
    (quota,) = of_kind(render_project(ctx("none")), "ResourceQuota")
    assert quota["metadata"]["namespace"] == "runplane-team-a"
    # The limit, else deserved: without a scheduler nothing borrowed could be taken back.
    assert quota["spec"]["hard"] == {
        "requests.nvidia.com/gpu": "8",
        "requests.cpu": "0.5",
        "requests.memory": str(128 * GI),
    }
    assert of_kind(render_project(ctx("none", Quota())), "ResourceQuota") == []
    assert shared("none") == []


def test_the_context_takes_the_deployments_scheduler_unless_the_project_has_one() -> None:
    def made(scheduler: str | None) -> ProjectContext:
        return ProjectContext.of(
            name="p",
            namespace="ns",
            queue=None,
            scheduler=scheduler,
            quota={"gpu": {"deserved": "1", "limit": None, "overQuotaWeight": "1"}},
            default_scheduler="kai",
        )

    assert (made(None).scheduler, made(None).queue) == ("kai", "p")
    assert made("kueue").scheduler == "kueue"
    assert made(None).quota.gpu.deserved == 1
