"""secrets at rest (the sealed columns widened, plain-text rows sealed) and the audit trail

Revision ID: 0011
Revises: 0005

Sealing needs the master key: BERTH_MASTER_KEY_FILE, or <BERTH_DATA_DIR>/keys/master.key (made if
missing). A database with no secret in plain text never touches it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0013"
branch_labels = None
depends_on = None

_SEALED = (("access_keys", "id", "secret"), ("signing_keys", "id", "secret"))


def _master_key():  # type: ignore[no-untyped-def]
    from berth.config import Settings
    from berth.keys import MasterKey

    return MasterKey.load_or_create(Settings.from_env().master_key_path)


def _rewrite(change) -> None:  # type: ignore[no-untyped-def]
    bind = op.get_bind()
    key = None
    for table, id_col, col in _SEALED:
        rows = bind.execute(sa.text(f"SELECT {id_col}, {col} FROM {table}")).fetchall()
        for row_id, value in rows:
            if key is None:
                key = _master_key()
            new = change(key, f"{table}:{row_id}", value)
            if new != value:
                bind.execute(sa.text(f"UPDATE {table} SET {col} = :v WHERE {id_col} = :i"), {"v": new, "i": row_id})


def upgrade() -> None:
    with op.batch_alter_table("access_keys") as batch:
        batch.alter_column("secret", type_=sa.Text, existing_type=sa.String(128), existing_nullable=False)
    with op.batch_alter_table("signing_keys") as batch:
        batch.alter_column("secret", type_=sa.Text, existing_type=sa.String(128), existing_nullable=False)
    _rewrite(lambda key, ctx, v: v if v.startswith("enc1:") else key.seal(v, ctx))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_time", sa.Float, nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("event_source", sa.String(64), nullable=False),
        sa.Column("event_name", sa.String(128), nullable=False),
        sa.Column("principal", sa.String(2048), nullable=False),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_events_time", "audit_events", ["event_time"])
    op.create_index("ix_audit_events_account", "audit_events", ["account_id", "event_time"])


def downgrade() -> None:
    op.drop_table("audit_events")
    _rewrite(lambda key, ctx, v: key.open(v, ctx))
    with op.batch_alter_table("signing_keys") as batch:
        batch.alter_column("secret", type_=sa.String(128), existing_type=sa.Text, existing_nullable=False)
    with op.batch_alter_table("access_keys") as batch:
        batch.alter_column("secret", type_=sa.String(128), existing_type=sa.Text, existing_nullable=False)
