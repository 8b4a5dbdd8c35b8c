"""Project quotas per resource: deserved, limit and overQuotaWeight in one document.

The three columns of guaranteed amounts become ``projects.quota``: each amount set before is
carried over as that resource's ``deserved`` (no limit, weight 1), which is what a bare amount
means on the API. The downgrade keeps the deserved amounts and drops limits and weights.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "projects",
        sa.Column(
            "quota",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    # numeric::text keeps the column's scale ("8.000"): trim it to what was meant ("8").
    op.execute(
        """
        UPDATE projects p SET quota = coalesce(
            (SELECT jsonb_object_agg(
                        x.resource,
                        jsonb_build_object('deserved', x.amount, 'limit', NULL,
                                           'overQuotaWeight', '1'))
             FROM (VALUES ('gpu', trim_scale(p.quota_gpu)::text), ('cpu', p.quota_cpu),
                          ('memory', p.quota_memory)) AS x(resource, amount)
             WHERE x.amount IS NOT NULL),
            '{}')
        """
    )
    op.drop_column("projects", "quota_gpu")
    op.drop_column("projects", "quota_cpu")
    op.drop_column("projects", "quota_memory")


def downgrade() -> None:
    op.add_column("projects", sa.Column("quota_memory", sa.VARCHAR(length=64), nullable=True))
    op.add_column("projects", sa.Column("quota_cpu", sa.VARCHAR(length=64), nullable=True))
    op.add_column(
        "projects", sa.Column("quota_gpu", sa.NUMERIC(precision=12, scale=3), nullable=True)
    )
    # A GPU amount written as a quantity ("500m") has no numeric form: it is dropped.
    op.execute(
        """
        UPDATE projects SET
            quota_gpu = CASE WHEN quota->'gpu'->>'deserved' ~ '^[0-9]+(\\.[0-9]+)?$'
                             THEN (quota->'gpu'->>'deserved')::numeric(12, 3) END,
            quota_cpu = quota->'cpu'->>'deserved',
            quota_memory = quota->'memory'->>'deserved'
        """
    )
    op.drop_column("projects", "quota")
