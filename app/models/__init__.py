"""ORM tables, one module per table; importing this package registers them all with Alembic."""

from app.models.audit import AuditEntry
from app.models.base import Base
from app.models.cluster_state import NodePool, ProjectUsage
from app.models.idempotency import IdempotencyKey
from app.models.policy import Policy
from app.models.project import Project
from app.models.simulated import SimulatedProject, SimulatedWorkload
from app.models.token import ApiToken
from app.models.workload import Workload, WorkloadEvent

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "IdempotencyKey",
    "NodePool",
    "Policy",
    "Project",
    "ProjectUsage",
    "SimulatedProject",
    "SimulatedWorkload",
    "Workload",
    "WorkloadEvent",
]
