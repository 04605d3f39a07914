"""Groups, roles, managed policies (AWS's and the account's own, with versions) and attachments;
and the one answer the authorizer needs from them: every identity policy of a principal."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable

from berth.db import iam as users_q
from berth.db import iam_entities as q
from berth.db.iam_entities import GroupRow, OidcProviderRow, PolicyRow, RoleRow, SamlProviderRow
from berth.db.store import Backend
from berth.iam.authz import Principal
from berth.iam.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    InvalidInput,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
    PolicyNotAttachable,
)
from berth.iam.managed import AWS_MANAGED, AWS_POLICY_PREFIX
from berth.iam.model import Group, ManagedPolicy, OidcProvider, PolicyVersion, Role
from berth.iam.policy import parse_policy

MAX_SESSION_DURATION = (3600, 43200)  # a role's MaxSessionDuration, as IAM bounds it
KINDS = ("user", "group", "role")
MAX_TAGS = 50  # per user or role, as IAM
Tags = tuple[tuple[str, str], ...]


def check_tags(tags: list[dict[str, str]]) -> Tags:
    """A request's Tags (the model has checked each key's and value's length and characters, and the
    count): what IAM checks beyond the model, as (key, value) pairs."""
    pairs = tuple((t["Key"], t.get("Value", "")) for t in tags)
    if len({k.lower() for k, _ in pairs}) != len(pairs):
        raise InvalidInput("Duplicate tag keys found. Please note that Tag keys are case insensitive.")
    for key, _ in pairs:
        if key.lower().startswith("aws:"):
            raise InvalidInput(f"Tag key {key} is invalid: tag keys may not start with 'aws:', a prefix reserved "
                               "for AWS use.")
    return pairs


def _id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(17))


def check_identity_policy(document: str) -> None:
    try:
        parse_policy(document, "identity")
    except ValueError as e:
        raise MalformedPolicyDocument(str(e)) from None


def check_trust_policy(document: str) -> None:
    try:
        policy = parse_policy(document, "repository")  # a resource policy: Principal required
    except ValueError as e:
        raise MalformedPolicyDocument(str(e)) from None
    for st in policy.statements:
        if st.actions is not None and not st.actions.fullmatch("sts:AssumeRole") \
                and not st.actions.fullmatch("sts:AssumeRoleWithWebIdentity") \
                and not st.actions.fullmatch("sts:AssumeRoleWithSAML") \
                and not st.actions.fullmatch("sts:TagSession"):
            raise MalformedPolicyDocument("AssumeRolepolicy contained an invalid action")


class IamEntities:
    def __init__(self, db: Backend, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    # groups

    async def create_group(self, account: str, name: str, path: str = "/") -> Group:
        row = GroupRow(account, name, _id("AGPA"), path, self.clock())
        if not await self.db.write(q.create_group, row):
            raise EntityAlreadyExists(f"Group with name {name} already exists.")
        return Group.from_row(row)

    async def get_group(self, account: str, name: str) -> Group:
        group = await self.find_group(account, name)
        if group is None:
            raise NoSuchEntity(f"The group with name {name} cannot be found.")
        return group

    async def find_group(self, account: str, name: str) -> Group | None:
        row = await self.db.read(q.get_group, account, name)
        return None if row is None else Group.from_row(row)

    async def list_groups(self, account: str) -> list[Group]:
        return [Group.from_row(r) for r in await self.db.read(q.list_groups, account)]

    async def delete_group(self, account: str, name: str) -> None:
        result = await self.db.write(q.delete_group, account, name)
        if result == "unknown":
            raise NoSuchEntity(f"The group with name {name} cannot be found.")
        if result == "conflict":
            raise DeleteConflict("Cannot delete entity, must remove users and policies from group first.")

    async def _user(self, account: str, name: str) -> None:
        if await self.db.read(users_q.get_user, account, name) is None:
            raise NoSuchEntity(f"The user with name {name} cannot be found.")

    async def add_user_to_group(self, account: str, group: str, user: str) -> None:
        await self.get_group(account, group)
        await self._user(account, user)
        if not await self.db.write(q.add_member, account, group, user):  # deleted meanwhile
            raise NoSuchEntity(f"The group {group} or the user {user} cannot be found.")

    async def remove_user_from_group(self, account: str, group: str, user: str) -> None:
        await self.get_group(account, group)
        await self._user(account, user)
        if not await self.db.write(q.remove_member, account, group, user):
            raise NoSuchEntity(f"The user with name {user} cannot be found in group {group}.")

    async def members(self, account: str, group: str) -> list[str]:
        return await self.db.read(q.members, account, group)

    async def groups_for_user(self, account: str, user: str) -> list[Group]:
        await self._user(account, user)
        return [Group.from_row(r) for r in await self.db.read(q.groups_for_user, account, user)]

    # roles

    async def create_role(self, account: str, name: str, trust: str, path: str = "/", description: str = "",
                          max_session_duration: int = 3600, tags: Tags = ()) -> Role:
        check_trust_policy(trust)
        low, high = MAX_SESSION_DURATION
        if not low <= max_session_duration <= high:
            raise InvalidInput(f"MaxSessionDuration must be between {low} and {high} seconds")
        row = RoleRow(account, name, _id("AROA"), path, trust, description, max_session_duration, self.clock())
        if not await self.db.write(q.create_role, row, tags):
            raise EntityAlreadyExists(f"Role with name {name} already exists.")
        return Role.from_row(row)

    async def get_role(self, account: str, name: str) -> Role:
        role = await self.find_role(account, name)
        if role is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        return role

    async def find_role(self, account: str, name: str) -> Role | None:
        row = await self.db.read(q.get_role, account, name)
        return None if row is None else Role.from_row(row)

    async def list_roles(self, account: str) -> list[Role]:
        return [Role.from_row(r) for r in await self.db.read(q.list_roles, account)]

    async def update_trust(self, account: str, name: str, trust: str) -> None:
        check_trust_policy(trust)
        if not await self.db.write(q.update_trust, account, name, trust):
            raise NoSuchEntity(f"The role with name {name} cannot be found.")

    async def delete_role(self, account: str, name: str) -> None:
        result = await self.db.write(q.delete_role, account, name)
        if result == "unknown":
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        if result == "conflict":
            raise DeleteConflict("Cannot delete entity, must detach all policies first.")

    # tags of users and roles

    async def tags(self, account: str, kind: str, name: str) -> list[tuple[str, str]]:
        await self._entity(account, kind, name)
        return await self.db.read(q.tags, account, kind, name)

    async def tag(self, account: str, kind: str, name: str, tags: Tags) -> None:
        await self._entity(account, kind, name)
        result = await self.db.write(q.tag, account, kind, name, tags, MAX_TAGS)
        if result == "unknown":  # deleted meanwhile
            raise NoSuchEntity(f"The {kind} with name {name} cannot be found.")
        if result == "limit":
            raise LimitExceeded(f"The number of tags has reached the maximum limit: a {kind} has at most "
                                f"{MAX_TAGS} tags.")

    async def untag(self, account: str, kind: str, name: str, keys: list[str]) -> None:
        await self._entity(account, kind, name)
        if not await self.db.write(q.untag, account, kind, name, keys):
            raise NoSuchEntity(f"The {kind} with name {name} cannot be found.")

    async def principal_tags(self, principal: Principal) -> dict[str, str]:
        """aws:PrincipalTag: a user's own tags, a role session's role's (its session tags win over them)."""
        if principal.role:
            own = await self.db.read(q.tags, principal.account, "role", principal.role)
        elif principal.user:
            own = await self.db.read(q.tags, principal.account, "user", principal.user)
        else:
            return {}
        return dict(own)

    # inline policies of groups and roles

    async def _entity(self, account: str, kind: str, name: str) -> None:
        if kind == "group":
            await self.get_group(account, name)
        elif kind == "role":
            await self.get_role(account, name)
        else:
            await self._user(account, name)

    async def put_inline(self, account: str, kind: str, entity: str, name: str, document: str) -> None:
        await self._entity(account, kind, entity)
        check_identity_policy(document)
        if not await self.db.write(q.put_inline, account, kind, entity, name, document):  # deleted meanwhile
            raise NoSuchEntity(f"The {kind} with name {entity} cannot be found.")

    async def get_inline(self, account: str, kind: str, entity: str, name: str) -> str:
        await self._entity(account, kind, entity)
        for n, doc in await self.db.read(q.inline_policies, account, kind, entity):
            if n == name:
                return doc
        raise NoSuchEntity(f"The {kind} policy with name {name} cannot be found.")

    async def list_inline(self, account: str, kind: str, entity: str) -> list[str]:
        await self._entity(account, kind, entity)
        return [n for n, _ in await self.db.read(q.inline_policies, account, kind, entity)]

    async def delete_inline(self, account: str, kind: str, entity: str, name: str) -> None:
        await self._entity(account, kind, entity)
        if not await self.db.write(q.delete_inline, account, kind, entity, name):
            raise NoSuchEntity(f"The {kind} policy with name {name} cannot be found.")

    # managed policies

    @staticmethod
    def policy_arn(account: str, name: str, path: str = "/") -> str:
        return f"arn:aws:iam::{account}:policy{path}{name}"

    async def create_policy(self, account: str, name: str, document: str, path: str = "/",
                            description: str = "") -> ManagedPolicy:
        check_identity_policy(document)
        now = self.clock()
        row = PolicyRow(self.policy_arn(account, name, path), account, name, path, _id("ANPA"), description, "v1", 2,
                        now, now)
        if await self._find_by_name(account, name) is not None or not await self.db.write(q.create_policy, row,
                                                                                             document):
            raise EntityAlreadyExists(f"A policy called {name} already exists. Duplicate names are not allowed.")
        return ManagedPolicy.from_row(row)

    async def _find_by_name(self, account: str, name: str) -> PolicyRow | None:
        return next((p for p in await self.db.read(q.list_policies, account) if p.name == name), None)

    async def get_policy(self, arn: str) -> ManagedPolicy:
        aws = AWS_MANAGED.get(arn)
        if aws is not None:
            return ManagedPolicy(arn, "aws", aws.name, aws.path, aws.id, aws.description, aws.version, 0,
                                 aws.created, aws.updated)
        row = await self.db.read(q.get_policy, arn)
        if row is None:
            raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")
        return ManagedPolicy.from_row(row)

    async def attachment_count(self, arn: str) -> int:
        return await self.db.read(q.attachment_count, arn)

    async def list_policies(self, account: str, scope: str = "All") -> list[ManagedPolicy]:
        out: list[ManagedPolicy] = []
        if scope in ("All", "AWS"):
            out += [await self.get_policy(arn) for arn in AWS_MANAGED]
        if scope in ("All", "Local"):
            out += [ManagedPolicy.from_row(r) for r in await self.db.read(q.list_policies, account)]
        return out

    def _own(self, account: str, arn: str) -> None:
        if arn.startswith(AWS_POLICY_PREFIX):
            raise InvalidInput(f"Policy {arn} is an AWS managed policy and cannot be changed.")
        if not arn.startswith(f"arn:aws:iam::{account}:policy/"):
            raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")

    async def delete_policy(self, account: str, arn: str) -> None:
        self._own(account, arn)
        result = await self.db.write(q.delete_policy, arn)
        if result == "unknown":
            raise NoSuchEntity(f"Policy {arn} was not found.")
        if result == "conflict":
            raise DeleteConflict("Cannot delete a policy attached to entities, or with versions besides the default.")

    async def create_version(self, account: str, arn: str, document: str, set_default: bool) -> PolicyVersion:
        self._own(account, arn)
        check_identity_policy(document)
        version = await self.db.write(q.create_version, arn, document, set_default, self.clock())
        if version is None:
            raise NoSuchEntity(f"Policy {arn} was not found.")
        if version == "":
            raise LimitExceeded(f"A managed policy can have up to {q.MAX_POLICY_VERSIONS} versions. Before you "
                                "create a new version, you must delete an existing version.")
        return PolicyVersion(arn, version, document, self.clock())

    async def get_version(self, arn: str, version: str) -> PolicyVersion:
        aws = AWS_MANAGED.get(arn)
        if aws is not None:
            if version != aws.version:
                raise NoSuchEntity(f"Policy {arn} version {version} does not exist or is not attachable.")
            return PolicyVersion(arn, version, aws.document, aws.updated)
        row = await self.db.read(q.get_version, arn, version)
        if row is None:
            raise NoSuchEntity(f"Policy {arn} version {version} does not exist or is not attachable.")
        return PolicyVersion.from_row(row)

    async def list_versions(self, arn: str) -> list[PolicyVersion]:
        if arn in AWS_MANAGED:
            return [await self.get_version(arn, AWS_MANAGED[arn].version)]
        await self.get_policy(arn)
        return [PolicyVersion.from_row(r) for r in await self.db.read(q.list_versions, arn)]

    async def set_default_version(self, account: str, arn: str, version: str) -> None:
        self._own(account, arn)
        if not await self.db.write(q.set_default_version, arn, version, self.clock()):
            raise NoSuchEntity(f"Policy {arn} version {version} does not exist or is not attachable.")

    async def delete_version(self, account: str, arn: str, version: str) -> None:
        self._own(account, arn)
        result = await self.db.write(q.delete_version, arn, version)
        if result == "unknown":
            raise NoSuchEntity(f"Policy {arn} version {version} does not exist or is not attachable.")
        if result == "default":
            raise DeleteConflict("Cannot delete the default version of a policy.")

    # attachments

    async def attach(self, account: str, kind: str, entity: str, arn: str) -> None:
        await self._entity(account, kind, entity)
        if arn not in AWS_MANAGED and not arn.startswith(f"arn:aws:iam::{account}:policy/"):
            raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")
        if arn in AWS_MANAGED and not AWS_MANAGED[arn].attachable:
            raise PolicyNotAttachable(f"Cannot attach a Service Role Policy to a Customer {kind.capitalize()}.")
        await self.get_policy(arn)
        if not await self.db.write(q.attach, account, kind, entity, arn):  # deleted meanwhile
            raise NoSuchEntity(f"The {kind} with name {entity} cannot be found.")

    async def detach(self, account: str, kind: str, entity: str, arn: str) -> None:
        await self._entity(account, kind, entity)
        if not await self.db.write(q.detach, account, kind, entity, arn):
            raise NoSuchEntity(f"Policy {arn} was not found.")

    async def attached(self, account: str, kind: str, entity: str) -> list[ManagedPolicy]:
        await self._entity(account, kind, entity)
        return [await self.get_policy(arn) for arn in await self.db.read(q.attached, account, kind, entity)]

    # OpenID Connect providers

    @staticmethod
    def oidc_arn(account: str, url: str) -> str:
        return f"arn:aws:iam::{account}:oidc-provider/{url}"

    @staticmethod
    def _oidc_key(arn: str) -> tuple[str, str]:
        return _provider_key(arn, "oidc-provider/", "OpenID Connect")

    async def create_oidc_provider(self, account: str, issuer: str, client_ids: list[str],
                                   thumbprints: list[str]) -> str:
        scheme, _, rest = issuer.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0]
        # AWS takes https only; plain http is allowed for an issuer on this machine (tests, sidecars)
        if not rest or not (scheme == "https" or scheme == "http" and host in ("127.0.0.1", "localhost", "[::1]")):
            raise InvalidInput("The URL of an OpenID Connect provider must start with https://")
        url = rest.rstrip("/")
        row = OidcProviderRow(account, url, issuer.rstrip("/"), json.dumps(client_ids), json.dumps(thumbprints),
                              self.clock())
        if not await self.db.write(q.create_oidc_provider, row):
            raise EntityAlreadyExists(f"Provider with url {issuer} already exists.")
        return self.oidc_arn(account, url)

    async def get_oidc_provider(self, arn: str) -> OidcProvider:
        account, url = self._oidc_key(arn)
        provider = await self.find_oidc_provider(account, url)
        if provider is None:
            raise NoSuchEntity(f"OpenIDConnect Provider not found for arn {arn}")
        return provider

    async def find_oidc_provider(self, account: str, url: str) -> OidcProvider | None:
        row = await self.db.read(q.get_oidc_provider, account, url)
        return None if row is None else OidcProvider.from_row(row)

    async def list_oidc_providers(self, account: str) -> list[str]:
        return [self.oidc_arn(account, r.url) for r in await self.db.read(q.list_oidc_providers, account)]

    async def delete_oidc_provider(self, arn: str) -> None:
        account, url = self._oidc_key(arn)
        if not await self.db.write(q.delete_oidc_provider, account, url):
            raise NoSuchEntity(f"OpenIDConnect Provider not found for arn {arn}")

    # SAML providers

    @staticmethod
    def saml_arn(account: str, name: str) -> str:
        return f"arn:aws:iam::{account}:saml-provider/{name}"

    @staticmethod
    def saml_key(arn: str) -> tuple[str, str]:
        return _provider_key(arn, "saml-provider/", "SAML")

    async def create_saml_provider(self, account: str, name: str, document: str) -> str:
        from berth.iam import saml  # lxml and signxml: loaded only where SAML is used

        try:
            metadata = saml.parse_metadata(document)
        except saml.SamlError as e:
            raise InvalidInput(f"Could not parse metadata: {e}") from None
        valid_until = metadata.valid_until.timestamp() if metadata.valid_until else None
        row = SamlProviderRow(account, name, _id("") + _id(""), document, valid_until, self.clock())
        if not await self.db.write(q.create_saml_provider, row):
            raise EntityAlreadyExists(f"SAMLProvider {name} already exists")
        return self.saml_arn(account, name)

    async def get_saml_provider(self, arn: str) -> SamlProviderRow:
        account, name = self.saml_key(arn)
        row = await self.db.read(q.get_saml_provider, account, name)
        if row is None:
            raise NoSuchEntity(f"Manifest not found for arn {arn}")
        return row

    async def find_saml_provider(self, account: str, name: str) -> SamlProviderRow | None:
        return await self.db.read(q.get_saml_provider, account, name)

    async def list_saml_providers(self, account: str) -> list[SamlProviderRow]:
        return await self.db.read(q.list_saml_providers, account)

    async def delete_saml_provider(self, arn: str) -> None:
        account, name = self.saml_key(arn)
        if not await self.db.write(q.delete_saml_provider, account, name):
            raise NoSuchEntity(f"SAMLProvider {arn} not found")

    # the authorizer's question

    async def _attached_documents(self, account: str, kind: str, entity: str) -> list[str]:
        arns = await self.db.read(q.attached, account, kind, entity)
        local = await self.db.read(q.default_documents, [a for a in arns if a not in AWS_MANAGED])
        return [AWS_MANAGED[a].document if a in AWS_MANAGED else local[a] for a in arns
                if a in AWS_MANAGED or a in local]

    async def _documents(self, account: str, kind: str, entity: str) -> list[str]:
        inline = [d for _, d in await self.db.read(q.inline_policies, account, kind, entity)]
        return inline + await self._attached_documents(account, kind, entity)

    async def extra_documents(self, principal: Principal) -> list[str]:
        """A user's attached policies and its groups' inline and attached policies; a role session's
        role's inline and attached policies (a user's own inline policies are IdentityService's)."""
        if principal.role:
            return await self._documents(principal.account, "role", principal.role)
        if principal.user is None:
            return []
        docs = await self._attached_documents(principal.account, "user", principal.user)
        for group in await self.db.read(q.groups_for_user, principal.account, principal.user):
            docs += await self._documents(principal.account, "group", group.name)
        return docs


def _provider_key(arn: str, prefix: str, kind: str) -> tuple[str, str]:
    """(account, name) of an identity provider's ARN `arn:aws:iam::<account>:<prefix><name>`."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith(prefix):
        raise InvalidInput(f"Invalid {kind} provider ARN {arn}")
    return parts[4], parts[5][len(prefix):]
