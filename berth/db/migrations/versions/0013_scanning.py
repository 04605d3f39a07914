"""scanning: vulnerability records and their affected packages, vulndb state and sources, registry scanning
configuration, image scans; signing configuration, signing profiles' keys, image signatures

Revision ID: 0013
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vuln_records",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("modified", sa.String(40), nullable=False),
        sa.Column("modified_ts", sa.Float, nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("imported_at", sa.Float, nullable=False),
    )
    op.create_table(
        "vuln_affected",
        sa.Column("record_id", sa.String(200), sa.ForeignKey("vuln_records.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("ecosystem", sa.String(64), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_vuln_affected_package", "vuln_affected", ["ecosystem", "name"])
    op.create_table(
        "vulndb_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "vulndb_sources",
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("imported_at", sa.Float, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
    )
    op.create_table(
        "registry_scanning",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("scan_type", sa.String(16), nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
    )
    op.create_table(
        "image_scans",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("scan_type", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("completed_at", sa.Float, nullable=True),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("inventory", sa.Text, nullable=True),
        sa.Column("findings", sa.Text, nullable=True),
        sa.Column("continuous", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "signing_config",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("rules", sa.Text, nullable=False),
    )
    op.create_table(
        "signing_profiles",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("private_key", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "image_signatures",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("profile_arn", sa.String(2048), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("signature_digest", sa.String(160), nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("image_signatures", "signing_profiles", "signing_config", "image_scans", "registry_scanning",
                  "vulndb_sources", "vulndb_state", "vuln_affected", "vuln_records"):
        op.drop_table(table)
