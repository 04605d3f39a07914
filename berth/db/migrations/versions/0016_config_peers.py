"""replication peers from the config file ([peers.<name>])

Revision ID: 0016
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replication_config_peers",
        sa.Column("name", sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql"),
                  sa.ForeignKey("replication_peers.name", ondelete="CASCADE"), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("replication_config_peers")
