"""ORM tables, one module per table; importing this package registers them all with Alembic."""

from app.models.base import Base
from app.models.policy import Policy
from app.models.project import Project
from app.models.workload import Workload, WorkloadEvent

__all__ = ["Base", "Policy", "Project", "Workload", "WorkloadEvent"]
