"""Clients made from the committed OpenAPI document by four independent generators: each is
generated, compiled or type-checked, and the two Python ones drive a short scenario against a
live server (create a project, put a policy, submit a training, read a 422 policy violation as
a problem, read and list the workload).

A document a generator rejects, or one that makes it drop an operation or a response, fails
here: openapi-python-client must report no warning at all, openapi-generator validates the
document first, ``tsc --strict`` refuses a client that exports a name twice.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import Generators
from tests.conftest import ADMIN_TOKEN, ROOT

pytestmark = pytest.mark.slow

CONTRACT = ROOT / "openapi" / "openapi.json"
POLICY = {
    "defaults": {"imagePullPolicy": "IfNotPresent"},
    "rules": {"compute": {"gpuDevicesRequest": {"max": 4}}},
}


def run(
    args: list[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{output[-4000:]}"
    return output


@pytest.fixture
def importable(tmp_path: Path) -> Iterator[Path]:
    """A directory whose packages the test may import; forgotten afterwards. Only its own
    modules are forgotten: a library first imported meanwhile (an httpcore backend, say) stays,
    as other code of this process already holds its classes (httpx maps httpcore's exceptions
    by class, and a second copy of the module would escape that map)."""
    before = set(sys.modules)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        where = [getattr(module, "__file__", None), *(getattr(module, "__path__", None) or ())]
        if any(str(w).startswith(str(tmp_path)) for w in where if w):
            del sys.modules[name]


def openapi_generator(generators: Generators, generator: str, out: Path, *extra: str) -> str:
    # Validation stays on (no --skip-validate-spec): an invalid document fails here.
    return run(
        [
            generators.openapi_generator,
            "generate",
            "-i",
            CONTRACT,
            "-g",
            generator,
            "-o",
            out,
            *extra,
        ]
    )


def test_openapi_python_client_without_warnings_drives_the_scenario(
    generators: Generators, importable: Path, live_api: str
) -> None:
    config = importable / "config.yaml"
    config.write_text("post_hooks: []\npackage_name_override: runplane_opc\n")
    output = run(
        [
            generators.openapi_python_client,
            "generate",
            "--path",
            CONTRACT,
            "--meta",
            "none",
            "--output-path",
            importable / "runplane_opc",
            "--config",
            config,
        ]
    )
    # It warns, and leaves out what it could not read, instead of failing.
    assert "warning" not in output.lower(), output
    assert "skipping" not in output.lower(), output
    scenario_openapi_python_client(live_api)


def scenario_openapi_python_client(url: str) -> None:
    opc: Any = importlib.import_module("runplane_opc")
    models: Any = importlib.import_module("runplane_opc.models")

    def api(module: str) -> Any:
        return importlib.import_module(f"runplane_opc.api.{module}")

    anonymous = opc.Client(base_url=url)
    refused = api("projects.list_projects").sync_detailed(client=anonymous)
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.Problem)

    client = opc.AuthenticatedClient(base_url=url, token=ADMIN_TOKEN)
    created = api("projects.create_project").sync_detailed(
        client=client, body=models.ProjectCreate(name="team-a")
    )
    assert created.status_code == 201, created.content
    assert created.parsed.name == "team-a"

    put = api("policies.put_project_policy").sync_detailed(
        "team-a",
        "trainings",
        client=client,
        body=models.PolicyWrite.from_dict(POLICY),
    )
    assert put.status_code == 201, put.content
    assert isinstance(put.parsed, models.Policy)
    assert put.parsed.version == 1

    def submit(name: str, gpus: int) -> Any:
        spec = models.TrainingSpec(
            image="pytorch/pytorch:2.4", compute=models.Compute(gpu_devices_request=gpus)
        )
        return api("workloads.submit_training").sync_detailed(
            client=client, body=models.TrainingSubmission(name=name, project="team-a", spec=spec)
        )

    violation = submit("too-big", 8)
    assert violation.status_code == 422
    problem = violation.parsed
    assert isinstance(problem, models.Problem)
    assert (problem.status, problem.title) == (422, "Policy violation")
    (error,) = problem.errors
    assert error.field == "spec.compute.gpuDevicesRequest"
    assert error.additional_properties["rule"] == "max"
    assert error.additional_properties["source"] == "project"

    accepted = submit("mnist", 2)
    assert accepted.status_code == 201, accepted.content
    workload_id = accepted.parsed.id
    assert isinstance(workload_id, uuid.UUID)

    read = api("workloads.get_workload").sync(workload_id, client=client)
    assert isinstance(read, models.Workload)
    assert (read.name, read.project, read.type_) == ("mnist", "team-a", "training")
    assert read.spec["imagePullPolicy"] == "IfNotPresent"  # the policy's default
    assert read.applied_defaults == ["imagePullPolicy"]

    page = api("workloads.list_workloads").sync(client=client, project="team-a")
    assert [w.id for w in page.items] == [workload_id]
    assert page.next_ is None


def test_openapi_generator_python_client_drives_the_scenario(
    generators: Generators, importable: Path, live_api: str
) -> None:
    openapi_generator(generators, "python", importable / "ogc", "--package-name", "runplane_ogc")
    (importable / "ogc" / "runplane_ogc").rename(importable / "runplane_ogc")
    scenario_openapi_generator_python(live_api)


def scenario_openapi_generator_python(url: str) -> None:
    ogc: Any = importlib.import_module("runplane_ogc")

    with ogc.ApiClient(ogc.Configuration(host=url)) as anonymous:
        with pytest.raises(ogc.ApiException) as refused:
            ogc.ProjectsApi(anonymous).list_projects()
        assert refused.value.status == 401
        assert isinstance(refused.value.data, ogc.Problem)

    with ogc.ApiClient(ogc.Configuration(host=url, access_token=ADMIN_TOKEN)) as client:
        project = ogc.ProjectsApi(client).create_project(ogc.ProjectCreate(name="team-a"))
        assert project.name == "team-a"

        put = ogc.PoliciesApi(client).put_project_policy(
            project="team-a",
            workload_type="trainings",
            policy_write=ogc.PolicyWrite.from_dict(POLICY),
        )
        assert isinstance(put, ogc.Policy)  # of PolicyPutResult's two forms
        assert put.version == 1

        workloads = ogc.WorkloadsApi(client)

        def submission(name: str, gpus: int) -> Any:
            spec = ogc.TrainingSpec(
                image="pytorch/pytorch:2.4", compute=ogc.Compute(gpu_devices_request=gpus)
            )
            return ogc.TrainingSubmission(name=name, project="team-a", spec=spec)

        with pytest.raises(ogc.ApiException) as violation:
            workloads.submit_training(submission("too-big", 8))
        assert violation.value.status == 422
        problem = violation.value.data
        assert isinstance(problem, ogc.Problem)
        assert (problem.status, problem.title) == (422, "Policy violation")
        (error,) = problem.errors
        assert error.var_field == "spec.compute.gpuDevicesRequest"
        assert error.additional_properties["rule"] == "max"

        accepted = workloads.submit_training(submission("mnist", 2))
        read = workloads.get_workload(accepted.id)
        assert (read.name, read.project, read.type) == ("mnist", "team-a", "training")
        assert read.spec["imagePullPolicy"] == "IfNotPresent"
        page = workloads.list_workloads(project="team-a")
        assert [w.id for w in page.items] == [accepted.id]


def test_typescript_fetch_client_type_checks_strictly(
    generators: Generators, tmp_path: Path
) -> None:
    out = tmp_path / "ts"
    openapi_generator(generators, "typescript-fetch", out)
    (out / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "noEmit": True,
                    "target": "es2022",
                    "module": "esnext",
                    "moduleResolution": "bundler",
                    "lib": ["es2022", "dom"],
                },
                "include": ["**/*.ts"],
            }
        )
    )
    run([generators.tsc, "--strict", "--noEmit", "-p", out / "tsconfig.json"])
    # Every /api/v1 call sends the bearer token; health does not need one.
    workloads = (out / "apis" / "WorkloadsApi.ts").read_text()
    assert 'headerParameters["Authorization"] = `Bearer ${tokenString}`' in workloads
    assert "Authorization" not in (out / "apis" / "OperationsApi.ts").read_text()


def test_oapi_codegen_go_client_builds(generators: Generators, tmp_path: Path) -> None:
    module = tmp_path / "client"
    module.mkdir()
    for name in ("go.mod", "go.sum"):
        (module / name).write_bytes((generators.go_module / name).read_bytes())
    source = module / "client.gen.go"
    run(
        [
            generators.oapi_codegen,
            "-generate",
            "types,client",
            "-package",
            "runplane",
            "-o",
            source,
            CONTRACT,
        ]
    )
    run(["go", "build", "./..."], cwd=module, env=generators.go_env())
    text = source.read_text()
    assert "func (c *Client) SubmitTraining(" in text
    assert "PolicyPutResult" in text
