"""The researcher's view: pods, URLs, log history, cluster events, change notifications.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a watcher sees of a workload: a change of any of these is notified.
_WATCHED = ("phase", "phase_message", "conditions", "pods", "pod_list", "urls", "desired_phase")


def upgrade() -> None:
    op.add_column(
        "workloads",
        sa.Column("pod_list", postgresql.JSONB(), server_default=sa.text("'[]'"), nullable=False),
    )
    op.add_column(
        "workloads",
        sa.Column("urls", postgresql.JSONB(), server_default=sa.text("'[]'"), nullable=False),
    )
    op.add_column(
        "workloads",
        sa.Column(
            "log_history", postgresql.JSONB(), server_default=sa.text("'{}'"), nullable=False
        ),
    )
    op.add_column(
        "workload_events",
        sa.Column("source", sa.String(length=16), server_default="runplane", nullable=False),
    )
    op.add_column("workload_events", sa.Column("uid", sa.String(length=64), nullable=True))
    op.add_column(
        "workload_events",
        sa.Column("count", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column(
        "workload_events",
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "workload_events",
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "workload_events", sa.Column("involved_object", postgresql.JSONB(), nullable=True)
    )
    op.create_index(
        "uq_workload_events_uid",
        "workload_events",
        ["workload_id", "uid"],
        unique=True,
        postgresql_where=sa.text("uid IS NOT NULL"),
    )
    # Row-level, with the workload's id as the payload: API processes fan each change out to
    # the watchers of that workload (app.workloads.changes). Sent when the transaction commits.
    op.execute(
        """
        CREATE FUNCTION runplane_notify_workload_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('runplane_workload_changes', NEW.id::text);
            RETURN NULL;
        END $$
        """
    )
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED)
    op.execute(
        f"""
        CREATE TRIGGER workloads_change_notify AFTER UPDATE ON workloads
        FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION runplane_notify_workload_change()
        """
    )
    op.execute(
        """
        CREATE TRIGGER workloads_insert_notify AFTER INSERT ON workloads
        FOR EACH ROW EXECUTE FUNCTION runplane_notify_workload_change()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER workloads_insert_notify ON workloads")
    op.execute("DROP TRIGGER workloads_change_notify ON workloads")
    op.execute("DROP FUNCTION runplane_notify_workload_change()")
    op.drop_index(
        "uq_workload_events_uid",
        table_name="workload_events",
        postgresql_where=sa.text("uid IS NOT NULL"),
    )
    for column in ("involved_object", "last_seen", "first_seen", "count", "uid", "source"):
        op.drop_column("workload_events", column)
    for column in ("log_history", "urls", "pod_list"):
        op.drop_column("workloads", column)
