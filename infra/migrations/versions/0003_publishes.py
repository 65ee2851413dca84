"""publishes: a delivered version's record in a production tracker

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:30:00

``publishes`` holds the tracker's IDs of a version's shot and version (ShotGrid Version, Kitsu preview file), one
row per version, tracker and site, and the publish stage run that made it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "publishes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("tracker", sa.String(length=16), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("shot_code", sa.String(length=255), nullable=False),
        sa.Column("tracker_shot_id", sa.String(length=64), nullable=False),
        sa.Column("tracker_version_id", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("stage_run_id", sa.Integer(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.ForeignKeyConstraint(["stage_run_id"], ["stage_runs.id"]),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "tracker", "site", name="uq_publishes_version_tracker_site"),
    )
    with op.batch_alter_table("publishes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_publishes_version_id"), ["version_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("publishes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_publishes_version_id"))
    op.drop_table("publishes")
