"""Projects' own cluster objects: the outbox of their desired state, and the simulated store.

A project's generation moves with each change (its quota, queue or scheduler...); the reconciler
applies its objects (scheduler queues or ResourceQuota) and records the generation it applied,
and why not when the cluster refused them. A project change wakes the reconciler as a workload's
does.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "projects", sa.Column("generation", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "projects",
        sa.Column("applied_generation", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "projects", sa.Column("cluster_message", sa.Text(), server_default="", nullable=False)
    )
    op.create_table(
        "simulated_projects",
        sa.Column("owner", sa.String(length=63), nullable=False),
        sa.Column("manifests", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_simulated_projects")),
    )
    # The function of 0004: one notification per statement, sent at commit.
    op.execute(
        """
        CREATE TRIGGER projects_outbox_notify
        AFTER INSERT OR DELETE OR UPDATE OF generation ON projects
        FOR EACH STATEMENT EXECUTE FUNCTION runplane_notify_outbox()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER projects_outbox_notify ON projects")
    op.drop_table("simulated_projects")
    op.drop_column("projects", "cluster_message")
    op.drop_column("projects", "applied_generation")
    op.drop_column("projects", "generation")
