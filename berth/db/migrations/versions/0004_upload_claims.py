"""uploads: committed size, the storage driver's state, and a writer claim with an expiry

Revision ID: 0004
Revises: 0002

A PATCH or PUT claims the upload at its committed size with a conditional update before it
writes, and commits the new size with another after (berth/db/uploads.py): two processes or
nodes can no longer both accept bytes at one offset. The claim expires, so a writer killed
mid-request does not hold the upload forever.

Uploads in progress when this runs are dropped: their bytes are in the previous storage layout
and their size was never recorded. Clients get BLOB_UPLOAD_UNKNOWN and start the blob again;
the purge removes the old files.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM uploads")
    with op.batch_alter_table("uploads") as t:
        t.add_column(sa.Column("size", sa.BigInteger, nullable=False, server_default="0"))
        t.add_column(sa.Column("state", sa.Text, nullable=True))
        t.add_column(sa.Column("claim", sa.String(32), nullable=True))
        t.add_column(sa.Column("claim_expires", sa.Float, nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM uploads")
    with op.batch_alter_table("uploads") as t:
        for name in ("claim_expires", "claim", "state", "size"):
            t.drop_column(name)
