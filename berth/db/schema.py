"""Table definitions: the single source of the schema (Alembic migrations must agree)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()


def Name(length: int) -> String:  # noqa: N802 - reads like a type in the table definitions
    """A listed name: byte order on PostgreSQL too, so pages sort as on SQLite whatever the cluster's locale."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")  # type: ignore[return-value]


repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", Name(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("tag_mutability", String(32), nullable=False, server_default="MUTABLE"),
    Column("tag_mutability_filters", Text, nullable=False, server_default="[]"),
    Column("scan_on_push", Integer, nullable=False, server_default="0"),
    Column("encryption", Text, nullable=False, server_default='{"encryptionType": "AES256"}'),
    UniqueConstraint("account_id", "region", "name", name="uq_repositories_name"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(160), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(160), ForeignKey("blobs.digest"), primary_key=True),
    Column("created_at", Float, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("subject_digest", String(160), nullable=True),
    Column("annotations", Text, nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("image_size", BigInteger, nullable=False),
    Column("pushed_at", Float, nullable=False),
    Column("last_pulled_at", Float, nullable=True),
    Index("ix_manifests_subject", "repository_id", "subject_digest"),
)

manifest_refs = Table(
    "manifest_refs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("manifest_digest", String(160), primary_key=True),
    Column("child_digest", String(160), primary_key=True),
    Column("kind", String(16), nullable=False),  # config | layer | manifest
    Index("ix_manifest_refs_child", "repository_id", "child_digest"),
)

tags = Table(
    "tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("name", Name(300), primary_key=True),
    Column("digest", String(160), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_tags_digest", "repository_id", "digest"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    # migration 0004: the committed size, the BlobStore driver's state, a writer's claim (berth/db/uploads.py)
    Column("size", BigInteger, nullable=False, server_default="0"),
    Column("state", Text, nullable=True),  # opaque to the registry; NULL reads as ""
    Column("claim", String(32), nullable=True),
    Column("claim_expires", Float, nullable=True),
)

# identity and control plane (migration 0002)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("created_at", Float, nullable=False),
)

iam_users = Table(
    "iam_users",
    metadata,
    Column("account_id", String(12), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False, unique=True),
    Column("path", String(512), nullable=False, server_default="/"),
    Column("created_at", Float, nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("secret", Text, nullable=False),  # sealed by the master key (berth.keys), migration 0011
    Column("status", String(16), nullable=False, server_default="Active"),
    Column("created_at", Float, nullable=False),
    Index("ix_access_keys_user", "account_id", "user_name"),
)

user_policies = Table(
    "user_policies",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("user_name", String(64), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret", Text, nullable=False),  # sealed by the master key (berth.keys), migration 0011
    Column("created_at", Float, nullable=False),
)

registry_policies = Table(
    "registry_policies",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("document", Text, nullable=False),
)

account_settings = Table(
    "account_settings",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(64), nullable=False),
)

repository_policies = Table(
    "repository_policies",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("document", Text, nullable=False),
)

repository_tags = Table(
    "repository_tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

# jobs, periodic schedules and events (migration 0003)

Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid, auto-assigned

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("key", String(512), nullable=True),  # the logical job: at most one queued or running row per (kind, key)
    Column("payload", Text, nullable=False, server_default="{}"),
    Column("state", String(16), nullable=False),  # queued | running | done | dead
    Column("rerun", Integer, nullable=False, server_default="0"),  # enqueued again while running: queue on finish
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", Float, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_jobs_claim", "state", "run_at"),
    Index("ix_jobs_live_key", "kind", "key", unique=True,
          sqlite_where=text("state IN ('queued', 'running')"),
          postgresql_where=text("state IN ('queued', 'running')")),
)

periodic = Table(
    "periodic",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("interval_seconds", Float, nullable=False),
    Column("next_run", Float, nullable=False),
    Column("last_owner", String(128), nullable=True),  # the node that enqueued the latest run
    Column("last_run", Float, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),  # read in id order
    Column("created_at", Float, nullable=False),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("repository", Name(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("digest", String(160), nullable=True),
    Column("tag", Name(300), nullable=True),
    Column("payload", Text, nullable=True),
    Index("ix_events_account", "account_id", "region", "id"),
)

# IAM entities: groups, roles, managed policies, attachments, OIDC providers (migration 0005)

iam_groups = Table(
    "iam_groups",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("name", Name(128), primary_key=True),
    Column("group_id", String(32), nullable=False, unique=True),
    Column("path", String(512), nullable=False, server_default="/"),
    Column("created_at", Float, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("group_name", String(128), primary_key=True),
    Column("user_name", String(64), primary_key=True),
    Index("ix_group_members_user", "account_id", "user_name"),
)

iam_roles = Table(
    "iam_roles",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("name", Name(64), primary_key=True),
    Column("role_id", String(32), nullable=False, unique=True),
    Column("path", String(512), nullable=False, server_default="/"),
    Column("trust_policy", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("max_session_duration", Integer, nullable=False, server_default="3600"),
    Column("created_at", Float, nullable=False),
)

entity_policies = Table(
    "entity_policies",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("entity_name", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)

managed_policies = Table(
    "managed_policies",
    metadata,
    Column("arn", String(2048), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("name", Name(128), nullable=False),
    Column("path", String(512), nullable=False, server_default="/"),
    Column("policy_id", String(32), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("default_version", String(16), nullable=False),
    Column("next_version", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_managed_policies_name"),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("policy_arn", String(2048), primary_key=True),
    Column("version_id", String(16), primary_key=True),
    Column("document", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

policy_attachments = Table(
    "policy_attachments",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("entity_name", String(128), primary_key=True),
    Column("policy_arn", String(2048), primary_key=True),
    Index("ix_policy_attachments_policy", "policy_arn"),
)

oidc_providers = Table(
    "oidc_providers",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("url", String(1024), primary_key=True),  # the issuer without its scheme, as IAM names it
    Column("issuer", String(1024), nullable=False),
    Column("client_ids", Text, nullable=False),  # JSON lists
    Column("thumbprints", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# The audit trail: one CloudTrail-shaped record per control-plane call and registry write (migration 0011)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_time", Float, nullable=False),
    Column("account_id", String(12), nullable=False),
    Column("event_source", String(64), nullable=False),
    Column("event_name", String(128), nullable=False),
    Column("principal", String(2048), nullable=False),  # the caller's ARN, "" when anonymous
    Column("error_code", String(128), nullable=True),
    Column("record", Text, nullable=False),  # the whole record, JSON
    Index("ix_audit_events_time", "event_time"),
    Index("ix_audit_events_account", "account_id", "event_time"),
)
