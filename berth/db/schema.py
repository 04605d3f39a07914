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
    # the archive storage class (berth/lifecycle): ACTIVE | ARCHIVED | ACTIVATING
    Column("image_status", String(16), nullable=False, server_default="ACTIVE"),
    Column("archived_at", Float, nullable=True),
    Column("activated_at", Float, nullable=True),
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


# lifecycle policies (berth/lifecycle, berth/db/lifecycle.py)

lifecycle_policies = Table(
    "lifecycle_policies",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("policy_text", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_evaluated_at", Float, nullable=True),
)

lifecycle_previews = Table(
    "lifecycle_previews",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("policy_text", Text, nullable=False),
    Column("status", String(16), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED (EXPIRED when read late)
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("results", Text, nullable=True),  # JSON list of the actions, as the evaluation returned them
    Column("error", Text, nullable=True),
)

lifecycle_history = Table(
    "lifecycle_history",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("repository", Name(256), nullable=False),
    Column("digest", String(160), nullable=False),
    Column("tags", Text, nullable=False),  # JSON list
    Column("rule_priority", Integer, nullable=False),
    Column("action", String(16), nullable=False),  # EXPIRE | TRANSITION
    Column("at", Float, nullable=False),
    Index("ix_lifecycle_history_repository", "account_id", "region", "repository", "id"),
)

pull_time_exclusions = Table(
    "pull_time_exclusions",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("principal_arn", String(2048), primary_key=True),
    Column("created_at", Float, nullable=False),
)
# replication (issue 9): the configuration per registry, status per image and destination, peers, back-fills

replication_configs = Table(
    "replication_configs",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("document", Text, nullable=False),  # the ReplicationConfiguration as JSON text
    Column("updated_at", Float, nullable=False),
)

replication_status = Table(
    "replication_status",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("repository", Name(256), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("dest_account", String(12), primary_key=True),
    Column("dest_region", String(32), primary_key=True),
    Column("status", String(16), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED
    Column("failure_code", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("detail", Text, nullable=True),  # how the last copy went (blobs linked, mounted, sent), or its error
    Column("updated_at", Float, nullable=False),
)

replication_peers = Table(
    "replication_peers",
    metadata,
    Column("name", Name(64), primary_key=True),
    Column("endpoint", String(1024), nullable=False),
    Column("access_key_id", String(128), nullable=False),
    Column("secret_access_key", Text, nullable=False),
    Column("regions", Text, nullable=False),  # comma-separated: the regions the peer serves as destinations
    Column("accounts", Text, nullable=False),  # comma-separated; empty: any account
    Column("created_at", Float, nullable=False),
)

replication_backfills = Table(
    "replication_backfills",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("dest_account", String(12), nullable=False),
    Column("dest_region", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failure_code", Text, nullable=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Index("ix_replication_backfills_registry", "account_id", "region", "started_at"),
)

replication_backfill_items = Table(
    "replication_backfill_items",
    metadata,
    Column("backfill_id", String(36), primary_key=True),
    Column("repository", Name(256), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("tag", String(300), nullable=True),
    Column("status", String(16), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED
    Column("failure_code", Text, nullable=True),
)
# garbage collection (migration 0007): berth/db/gc.py, berth/lifecycle/gc.py

blob_gc = Table(
    "blob_gc",
    metadata,
    Column("digest", String(160), primary_key=True),  # every blobs row has one; a digest in flight may too
    Column("linked_at", Float, nullable=False),  # last linked (or read by a HEAD/GET, or first pinned or seen)
    Column("pinned_at", Float, nullable=True),  # an upload is writing its bytes (kept whatever the grace)
    Column("condemned_at", Float, nullable=True),  # a collection is deleting it: no link may be made
    Column("unrecorded_size", BigInteger, nullable=True),  # found in storage with no blobs row (a crash)
    Index("ix_blob_gc_linked", "linked_at"),
)

# "is this digest referenced by any manifest, in any repository?" (the collection's check), and its links
# (the collection locks and deletes them; deleting a blobs row looks them up for the foreign key)
Index("ix_manifest_refs_child_any", manifest_refs.c.child_digest)
Index("ix_repository_blobs_digest", repository_blobs.c.digest)
# pull-through cache, repository creation templates, Secrets Manager secrets (migration 0009)

repository_creation_templates = Table(
    "repository_creation_templates",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("prefix", Name(256), primary_key=True),  # "ROOT" or a namespace without its trailing "/"
    Column("description", Text, nullable=False),
    Column("applied_for", Text, nullable=False),  # JSON list
    Column("tag_mutability", String(32), nullable=False, server_default="MUTABLE"),
    Column("tag_mutability_filters", Text, nullable=False, server_default="[]"),
    Column("encryption", Text, nullable=False, server_default='{"encryptionType": "AES256"}'),
    Column("resource_tags", Text, nullable=False, server_default="[]"),  # JSON [{"Key", "Value"}]
    Column("repository_policy", Text, nullable=True),
    Column("lifecycle_policy", Text, nullable=True),
    Column("custom_role_arn", String(2048), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

pull_through_rules = Table(
    "pull_through_rules",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("prefix", Name(30), primary_key=True),  # ecrRepositoryPrefix ("ROOT" or without the trailing "/")
    Column("upstream_url", String(1024), nullable=False),  # as given (a bare host means https)
    Column("upstream_registry", String(64), nullable=True),
    Column("upstream_prefix", String(30), nullable=False, server_default="ROOT"),
    Column("credential_arn", String(612), nullable=True),
    Column("custom_role_arn", String(2048), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

pull_through_checks = Table(
    "pull_through_checks",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", Name(300), primary_key=True),
    Column("checked_at", Float, nullable=False),  # when the upstream was last asked about this tag
)

secrets = Table(
    "secrets",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", Name(512), primary_key=True),
    Column("arn", String(2048), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("kms_key_id", String(2048), nullable=True),
    Column("sealed", Text, nullable=False),  # the value, encrypted (berth/secrets/box.py)
    Column("version_id", String(64), nullable=False),
    Column("tags", Text, nullable=False, server_default="[]"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),  # scheduled deletion: unreadable from now on
)


# scanning: the offline vulnerability database, registry scanning configuration, image scans (migration 0013)

vuln_records = Table(
    "vuln_records",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("modified", String(40), nullable=False),  # as the record says (RFC 3339)
    Column("modified_ts", Float, nullable=False),  # the same, for "newer replaces older"
    Column("source", String(512), nullable=False),  # the file or archive it came from
    Column("severity", String(16), nullable=False),  # an ECR level
    Column("score", Float, nullable=True),
    Column("body", Text, nullable=False),  # JSON: summary, details, aliases, references, vector
    Column("imported_at", Float, nullable=False),
)

vuln_affected = Table(
    "vuln_affected",
    metadata,
    Column("record_id", String(200), ForeignKey("vuln_records.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("ecosystem", String(64), nullable=False),  # OSV's, with its release ("Debian:12")
    Column("name", String(512), nullable=False),
    Column("data", Text, nullable=False),  # JSON: ranges, versions, severity
    Index("ix_vuln_affected_package", "ecosystem", "name"),
)

vulndb_state = Table(
    "vulndb_state",
    metadata,
    Column("id", Integer, primary_key=True),  # one row, id 1
    Column("generation", Integer, nullable=False),  # bumped by every import that changed a record
    Column("updated_at", Float, nullable=False),
)

vulndb_sources = Table(
    "vulndb_sources",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("imported_at", Float, nullable=False),
    Column("records", Integer, nullable=False),  # records read from it in its latest import
    Column("changed", Integer, nullable=False),  # of which new or newer
    Column("failed", Integer, nullable=False),
)

registry_scanning = Table(
    "registry_scanning",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("scan_type", String(16), nullable=False),  # BASIC | ENHANCED
    Column("rules", Text, nullable=False),  # JSON, the model's RegistryScanningRule list
)

image_scans = Table(
    "image_scans",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("status", String(32), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED | UNSUPPORTED_IMAGE | …
    Column("description", Text, nullable=False),
    Column("scan_type", String(16), nullable=False),
    Column("requested_at", Float, nullable=False),  # the latest StartImageScan or push that asked
    Column("completed_at", Float, nullable=True),
    Column("generation", Integer, nullable=False, server_default="0"),  # the vulndb generation matched against
    Column("inventory", Text, nullable=True),  # JSON (berth.scanning.model.Inventory)
    Column("findings", Text, nullable=True),  # JSON list, worst first
    Column("continuous", Integer, nullable=False, server_default="0"),  # re-matched when the vulndb changes
)

signing_config = Table(
    "signing_config",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("rules", Text, nullable=False),  # JSON, the model's SigningRule list
)

signing_profiles = Table(
    "signing_profiles",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("private_key", Text, nullable=False),  # PEM (PKCS#8); encryption at rest is the keys work's
    Column("public_key", Text, nullable=False),  # PEM (SubjectPublicKeyInfo), what verifiers are given
    Column("created_at", Float, nullable=False),
)

image_signatures = Table(
    "image_signatures",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("profile_arn", String(2048), primary_key=True),
    Column("status", String(16), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED
    Column("failure_code", String(64), nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("signature_digest", String(160), nullable=True),  # the signature manifest
    Column("updated_at", Float, nullable=False),
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


# Replication peers that come from the config file's [peers.<name>] tables (migration 0016): the CLI may not
# change them, and a start removes those the file no longer names (berth/replication/config_peers.py)

replication_config_peers = Table(
    "replication_config_peers",
    metadata,
    Column("name", Name(64), ForeignKey("replication_peers.name", ondelete="CASCADE"), primary_key=True),
)

# Identity: the tags of IAM users and roles (migration 0017). IAM compares tag keys without case and
# keeps the case they were given: key_lower is the key's identity, key what is shown.

iam_tags = Table(
    "iam_tags",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("kind", String(8), primary_key=True),  # "user" | "role"
    Column("entity_name", String(128), primary_key=True),
    Column("key_lower", String(512), primary_key=True),
    Column("key", String(512), nullable=False),
    Column("value", Text, nullable=False),
)

# SAML 2.0 identity providers (migration 0017): the IdP's metadata as sent, for AssumeRoleWithSAML

saml_providers = Table(
    "saml_providers",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("name", Name(128), primary_key=True),
    Column("provider_uuid", String(64), nullable=False),
    Column("metadata_document", Text, nullable=False),
    Column("valid_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
)

# The archive storage location (berth/lifecycle/archive.py, migration 0014): a row per digest whose bytes
# live in the archive store, or that a placement is moving (either way)

archived_blobs = Table(
    "archived_blobs",
    metadata,
    Column("digest", String(160), primary_key=True),
    Column("in_archive", Integer, nullable=False),  # 1: the bytes' home is the archive store; 0: the main store
    Column("moving_since", Float, nullable=True),  # a placement holds the digest (copying, deleting a copy)
    Column("moved_at", Float, nullable=True),  # when in_archive last changed
)
