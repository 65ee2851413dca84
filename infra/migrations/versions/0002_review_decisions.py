"""review decisions: one winner per round of decisions on a mask or a version

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 09:10:00

``mask_reviews`` gains ``round`` (the n-th decision on that mask; existing rows are numbered by id) and a unique
(mask_key, round); ``version_reviews`` records decisions on delivered versions the same way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mask_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="1"))
    op.execute(
        "UPDATE mask_reviews SET round = (SELECT count(*) FROM mask_reviews AS earlier "
        "WHERE earlier.mask_key = mask_reviews.mask_key AND earlier.id <= mask_reviews.id)"
    )
    with op.batch_alter_table("mask_reviews", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_mask_reviews_key_round", ["mask_key", "round"])
    op.create_table(
        "version_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=255), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "round", name="uq_version_reviews_version_round"),
    )
    with op.batch_alter_table("version_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_version_reviews_version_id"), ["version_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("version_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_version_reviews_version_id"))
    op.drop_table("version_reviews")
    with op.batch_alter_table("mask_reviews", schema=None) as batch_op:
        batch_op.drop_constraint("uq_mask_reviews_key_round", type_="unique")
        batch_op.drop_column("round")
