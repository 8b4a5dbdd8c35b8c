"""What the reconciler observed: each project's usage and each node pool's capacity.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_pools",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("allocatable", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("allocated", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("largest_node", sa.Numeric(precision=12, scale=3), nullable=False),
        sa.Column("largest_free", sa.Numeric(precision=12, scale=3), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_node_pools")),
    )
    op.create_table(
        "project_usage",
        sa.Column("project", sa.String(length=40), nullable=False),
        sa.Column("usage", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["project"],
            ["projects.name"],
            name=op.f("fk_project_usage_project_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", name=op.f("pk_project_usage")),
    )


def downgrade() -> None:
    op.drop_table("project_usage")
    op.drop_table("node_pools")
