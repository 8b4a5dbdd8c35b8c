"""``GET /explain``: field documentation with the defaults and rules in effect (kubectl explain)."""

from __future__ import annotations

from typing import Any

from app.db import Conn
from app.domain import fields
from app.domain.spec import TYPE_TO_COLLECTION, WorkloadType
from app.errors import NotFound
from app.policies import engine, repository, schemas, service
from app.projects.repository import ProjectRow


def _at(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


async def _global_only(conn: Conn, workload_type: WorkloadType) -> engine.EffectivePolicy:
    row = await repository.find(conn, project_id=None, workload_type=workload_type)
    return engine.resolve_effective(
        workload_type,
        global_policy={"defaults": row.defaults, "rules": row.rules} if row else None,
        project_policy=None,
        inherit_global=False,
    )


async def explain(
    conn: Conn,
    *,
    workload_type: WorkloadType,
    field: str | None,
    project: ProjectRow | None,
) -> schemas.Explanation:
    catalogue = fields.catalogue(workload_type)
    if field is not None and field not in catalogue:
        raise NotFound(
            f"{workload_type} workloads have no field {field!r}; "
            f"GET /api/v1/explain/{TYPE_TO_COLLECTION[workload_type]} lists them."
        )
    effective = (
        (await service.resolve_for(conn, project, workload_type)).policy
        if project is not None
        else await _global_only(conn, workload_type)
    )
    paths = [field] if field is not None else list(catalogue)
    items = []
    for path in paths:
        info = catalogue[path]
        doc = info.to_dict()
        source = effective.fields.get(path)
        items.append(
            schemas.ExplainedField(
                field=path,
                kind=info.kind,
                description=info.description,
                rule_keys=list(info.rule_keys),
                options=doc.get("options"),
                item_key=doc.get("itemKey"),
                item_fields=doc.get("itemFields"),
                bounds=doc.get("bounds"),
                safe_default=doc.get("safeDefault"),
                default=_at(effective.defaults, path),
                rules=_at(effective.rules, path),
                source=schemas.FieldSource(default=source.default, rules=source.rules)
                if source
                else None,
            )
        )
    return schemas.Explanation(
        workload_type=workload_type,
        project=project.name if project else None,
        policy_source=effective.source,
        fields=items,
    )
