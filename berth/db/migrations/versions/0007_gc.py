"""garbage collection: a blob's last link time and condemnation; refs and links by digest

Revision ID: 0007
Revises: 0005

blob_gc holds, per digest, when a repository last linked it (or an upload pinned it before writing
its bytes) and whether a collection is deleting it (berth/db/gc.py says how they keep the race
closed). Existing blobs get a row whose link time is their newest link, so a collection right after
the upgrade still grants them the grace period from their last link.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_gc",
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("linked_at", sa.Float, nullable=False),
        sa.Column("pinned_at", sa.Float, nullable=True),
        sa.Column("condemned_at", sa.Float, nullable=True),
        sa.Column("unrecorded_size", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_blob_gc_linked", "blob_gc", ["linked_at"])
    op.create_index("ix_manifest_refs_child_any", "manifest_refs", ["child_digest"])
    op.create_index("ix_repository_blobs_digest", "repository_blobs", ["digest"])
    op.execute("INSERT INTO blob_gc (digest, linked_at) SELECT b.digest, "
               "COALESCE((SELECT MAX(rb.created_at) FROM repository_blobs rb WHERE rb.digest = b.digest), "
               "b.created_at) FROM blobs b")


def downgrade() -> None:
    op.drop_index("ix_repository_blobs_digest", table_name="repository_blobs")
    op.drop_index("ix_manifest_refs_child_any", table_name="manifest_refs")
    op.drop_index("ix_blob_gc_linked", table_name="blob_gc")
    op.drop_table("blob_gc")
