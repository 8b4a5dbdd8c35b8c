"""Wake the reconciler: NOTIFY runplane_outbox when a workload's desired state changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Statement-level: one notification per statement (a batch of submissions is one), sent when
    # the transaction commits; PostgreSQL folds repeats within a transaction into one.
    op.execute(
        """
        CREATE FUNCTION runplane_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('runplane_outbox', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER workloads_outbox_notify
        AFTER INSERT OR UPDATE OF generation ON workloads
        FOR EACH STATEMENT EXECUTE FUNCTION runplane_notify_outbox()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER workloads_outbox_notify ON workloads")
    op.execute("DROP FUNCTION runplane_notify_outbox()")
