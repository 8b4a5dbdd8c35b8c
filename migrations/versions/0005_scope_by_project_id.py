"""API tokens are scoped to project ids, not names; workloads are listed by project id.

A token scoped to project ``x`` by name kept its access when ``x`` was deleted and another
project was created under that name. Existing tokens keep the projects their names denote now;
a name that denotes no project (its project was deleted) is dropped, as it can no longer be
told which project it meant.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_tokens",
        sa.Column("project_ids", sa.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
    )
    op.execute(
        "UPDATE api_tokens t SET project_ids ="
        " ARRAY(SELECT p.id FROM projects p WHERE p.name = ANY(t.projects) ORDER BY p.id)"
    )
    op.drop_column("api_tokens", "projects")
    op.create_index(
        "ix_workloads_project_id_created",
        "workloads",
        ["project_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_workloads_project_id_created", table_name="workloads")
    op.add_column(
        "api_tokens",
        sa.Column("projects", sa.ARRAY(sa.String(length=40)), server_default="{}", nullable=False),
    )
    op.execute(
        "UPDATE api_tokens t SET projects ="
        " ARRAY(SELECT p.name FROM projects p WHERE p.id = ANY(t.project_ids) ORDER BY p.name)"
    )
    op.drop_column("api_tokens", "project_ids")
