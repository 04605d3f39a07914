"""the archive storage location: which blobs live in the archive store, and placements in flight

Revision ID: 0014
Revises: 0011

archived_blobs has a row per digest whose bytes live in the archive store (in_archive = 1) or that a
placement is moving between the stores (moving_since); no row: the main store. berth/lifecycle/archive.py
says how moves stay safe while pushes, pulls and collections go on.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archived_blobs",
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("in_archive", sa.Integer, nullable=False),
        sa.Column("moving_since", sa.Float, nullable=True),
        sa.Column("moved_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("archived_blobs")
