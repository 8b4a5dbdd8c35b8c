"""Authorization: one decision per route, keyed by (method, route template), denied by default.

A decision names the least role that may call the route and where its project comes from:

- ``path``: a ``{project}`` path parameter. Decided here, before anything is read: a project
  outside the caller's scope answers 404 (its name must not leak), then a too-small role 403.
- ``body``: the project named in the request body. The router checks visibility, then role.
- ``resource``: the project of a stored resource (a workload by id). The service loads it with
  the scope in the SQL ``WHERE`` (404), then the router checks the role (403).
- ``filter``: a list; the service filters it in SQL to the caller's projects.
- ``query``: an optional ``?project=`` narrows what is shown; the router checks visibility.
- ``global``: no project (tokens, audit, global policies).

``tests/auth/test_matrix.py`` drives every route of the app through this table, so a route added
without a decision fails there, and is refused at runtime (403) rather than left open.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.auth.principal import Principal, Role
from app.errors import Forbidden, NotFound

log = logging.getLogger("runplane")

ScopeSource = Literal["path", "body", "resource", "filter", "query", "global"]


@dataclass(frozen=True)
class Decision:
    role: Role
    scope: ScopeSource
    action: str  # for messages: "Only an administrator may <action>."


def _d(role: Role, scope: ScopeSource, action: str) -> Decision:
    return Decision(role, scope, action)


_P = "/api/v1"
_POLICY = _P + "/projects/{project}/policies/{workloadType}"
_WORKLOAD = _P + "/workloads/{workloadId}"

DECISIONS: Mapping[tuple[str, str], Decision] = {
    # Projects
    ("POST", _P + "/projects"): _d("admin", "global", "create projects"),
    ("GET", _P + "/projects"): _d("viewer", "filter", "list projects"),
    ("GET", _P + "/projects/{project}"): _d("viewer", "path", "read projects"),
    ("GET", _P + "/projects/{project}/manifests"): _d("viewer", "path", "read projects"),
    ("PATCH", _P + "/projects/{project}"): _d("admin", "path", "change projects"),
    ("DELETE", _P + "/projects/{project}"): _d("admin", "path", "delete projects"),
    # Policies: everyone reads the global ones (they bind every project); only admins write.
    ("GET", _P + "/policies"): _d("viewer", "filter", "list policies"),
    ("GET", _P + "/policies/global/{workloadType}"): _d("viewer", "global", "read policies"),
    ("PUT", _P + "/policies/global/{workloadType}"): _d("admin", "global", "write policies"),
    ("DELETE", _P + "/policies/global/{workloadType}"): _d("admin", "global", "delete policies"),
    ("GET", _POLICY): _d("viewer", "path", "read policies"),
    ("PUT", _POLICY): _d("admin", "path", "write policies"),
    ("DELETE", _POLICY): _d("admin", "path", "delete policies"),
    ("GET", _POLICY + "/effective"): _d("viewer", "path", "read policies"),
    ("GET", _P + "/explain/{workloadType}"): _d("viewer", "query", "explain fields"),
    # Workloads
    ("POST", _P + "/workloads/interactives"): _d("researcher", "body", "submit workloads"),
    ("POST", _P + "/workloads/trainings"): _d("researcher", "body", "submit workloads"),
    ("POST", _P + "/workloads/distributed"): _d("researcher", "body", "submit workloads"),
    ("POST", _P + "/workloads/inferences"): _d("researcher", "body", "submit workloads"),
    ("GET", _P + "/workloads"): _d("viewer", "filter", "list workloads"),
    ("GET", _WORKLOAD): _d("viewer", "resource", "read workloads"),
    ("GET", _WORKLOAD + "/events"): _d("viewer", "resource", "read workloads"),
    ("GET", _WORKLOAD + "/manifests"): _d("viewer", "resource", "read workloads"),
    ("GET", _WORKLOAD + "/pods"): _d("viewer", "resource", "read workloads"),
    ("GET", _WORKLOAD + "/logs"): _d("viewer", "resource", "read workloads"),
    ("GET", _WORKLOAD + "/watch"): _d("viewer", "resource", "read workloads"),
    ("POST", _WORKLOAD + "/suspend"): _d("researcher", "resource", "suspend workloads"),
    ("POST", _WORKLOAD + "/resume"): _d("researcher", "resource", "resume workloads"),
    ("DELETE", _WORKLOAD): _d("researcher", "resource", "delete workloads"),
    # The cluster: every principal may see what capacity there is (as in Run:ai).
    ("GET", _P + "/nodepools"): _d("viewer", "global", "read node pools"),
    # Tokens and audit
    ("POST", _P + "/tokens"): _d("admin", "global", "create tokens"),
    ("GET", _P + "/tokens"): _d("admin", "global", "list tokens"),
    ("DELETE", _P + "/tokens/{tokenId}"): _d("admin", "global", "revoke tokens"),
    ("GET", _P + "/audit"): _d("admin", "global", "read the audit log"),
}


@dataclass(frozen=True)
class Access:
    """A principal and the decision of the route it called: what routers and services need
    to finish the checks the route table could not make alone."""

    principal: Principal
    decision: Decision

    def require(self) -> None:
        """403 unless the role suffices; call it once the target proved visible."""
        self.principal.require(self.decision.role, self.decision.action)

    def check_project(self, project: str) -> None:
        """For a project named in a body: 404 when out of scope, then 403. By name only: the
        service reading the project checks its id too (``app.sql.scope``)."""
        if not self.principal.sees(project):
            raise project_not_found(project)
        self.require()


def project_not_found(name: str) -> NotFound:
    # The very words of a project that does not exist: scope must not be told from absence.
    return NotFound(f"Project {name!r} does not exist.")


def check_route(
    principal: Principal, *, method: str, template: str, path_params: Mapping[str, Any]
) -> Decision:
    """What can be decided from the route alone; the rest is left to routers and services."""
    decision = DECISIONS.get(("GET" if method == "HEAD" else method, template))
    if decision is None:
        log.error("no access decision for %s %s; refusing", method, template)
        raise Forbidden(f"No access decision covers {method} {template}.")
    if principal.is_admin:
        return decision
    if decision.scope == "path":
        project = str(path_params.get("project", ""))
        if not principal.sees(project):
            raise project_not_found(project)
    if decision.scope in ("path", "filter", "query", "global"):
        principal.require(decision.role, decision.action)
    return decision
