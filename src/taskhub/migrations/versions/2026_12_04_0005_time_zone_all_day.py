"""``users.time_zone`` (IANA name, default ``UTC``) and all-day tasks: ``tasks.all_day`` and
``tasks.due_on`` (the calendar day; ``due_date`` then holds the last microsecond of that day in
the owner's time zone). Existing rows become UTC users and timed tasks, exactly what they were.

Revision ID: 0005_time_zone_all_day
Revises: 0004_outbox_headers
Create Date: 2026-12-04 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_time_zone_all_day"
down_revision: str | None = "0004_outbox_headers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALL_DAY_RULE = "(all_day AND due_on IS NOT NULL AND due_date IS NOT NULL) OR (NOT all_day AND due_on IS NULL)"


# ``users`` is changed in place, never in batch mode: batch mode on SQLite copies the table and drops
# the old one, and with foreign keys on (db/session.py) that drop deletes every row referencing it
# (``ON DELETE CASCADE``: tasks, tokens, ...). SQLite adds and (3.35+) drops a column in place.
# ``tasks`` is referenced by no table, so batch mode (needed for its CHECK constraint) is safe there.


def upgrade() -> None:
    op.add_column("users", sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("all_day", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("due_on", sa.Date(), nullable=True))
        batch_op.create_check_constraint(op.f("ck_tasks_all_day"), _ALL_DAY_RULE)


def downgrade() -> None:
    # All-day tasks keep their due_date (the end of their day): they become timed tasks.
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_tasks_all_day"), type_="check")
        batch_op.drop_column("due_on")
        batch_op.drop_column("all_day")
    op.drop_column("users", "time_zone")
