"""The simulated cluster remembers the preemptions its scheduler made.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "simulated_workloads",
        sa.Column("preempted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("simulated_workloads", sa.Column("preempted_by", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("simulated_workloads", "preempted_by")
    op.drop_column("simulated_workloads", "preempted_at")
