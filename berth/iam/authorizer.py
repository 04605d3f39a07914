"""--auth iam: every decision through the IAM evaluation logic, cached until a policy changes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from berth.db import policies as q
from berth.db.store import Backend
from berth.iam.authz import Context, Principal
from berth.iam.policy import AuthzRequest, Decision, Policy, evaluate, parse_policy
from berth.iam.service import IdentityService

TagLookup = Callable[[str, str, str], Awaitable[dict[str, str]]]
_TTL = 5.0  # decisions may depend on time conditions: keep them briefly even when nothing changes
# With REGISTRY_POLICY_SCOPE V1 the registry policy governs only these actions (ECR's scope versions).
_V1_ACTIONS = frozenset({"ecr:ReplicateImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"})


def _parse_arn(resource: str) -> tuple[str, str, str | None]:
    """(account, region, repository name or None) of an ECR ARN."""
    parts = resource.split(":", 5)
    if len(parts) < 6 or parts[2] != "ecr":
        return "", "", None
    region, account, rest = parts[3], parts[4], parts[5]
    name = rest[len("repository/"):] if rest.startswith("repository/") else None
    return account, region, (name if name and "*" not in name else None)


class PolicyAuthorizer:
    def __init__(self, db: Backend, identity: IdentityService, resource_tags: TagLookup | None = None) -> None:
        self.db = db
        self.identity = identity
        self.resource_tags = resource_tags
        self._version: int | None = None
        self._stamp = 0.0
        self._decisions: dict[tuple[str, ...], Decision] = {}
        self._docs: dict[tuple[str, ...], Policy | None] = {}
        self._v1: dict[tuple[str, ...], bool] = {}

    def _fresh(self) -> None:
        now = time.monotonic()
        v = self.db.version()
        if v != self._version or v is None and now - self._stamp > 1.0 or now - self._stamp > _TTL:
            self._version = v
            self._stamp = now
            self._decisions.clear()
            self._docs.clear()
            self._v1.clear()

    async def _policy(self, key: tuple[str, ...], kind: str) -> Policy | None:
        if key in self._docs:
            return self._docs[key]
        if kind == "repository":
            doc = await self.db.read(q.repository_policy_by_name, key[0], key[1], key[2])
        else:
            doc = await self.db.read(q.get_registry_policy, key[0], key[1])
            scope = await self.db.read(q.get_setting, key[0], key[1], "REGISTRY_POLICY_SCOPE")
            self._v1[key] = scope == "V1"
        policy = parse_policy(doc, kind) if doc else None  # type: ignore[arg-type]
        self._docs[key] = policy
        return policy

    @staticmethod
    def _context(principal: Principal, context: Context,
                 own_tags: Mapping[str, str] | None = None) -> dict[str, str | list[str]]:
        now = datetime.now(UTC)
        ctx: dict[str, str | list[str]] = {
            "aws:SourceIp": context.source_ip,
            "aws:SecureTransport": "true" if context.secure_transport else "false",
            "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:EpochTime": str(int(now.timestamp())),
            "aws:MultiFactorAuthPresent": "false",
            "aws:ViaAWSService": "false",  # true only for Berth's own calls on the caller's behalf (called_via)
            **context.extra,
        }
        # what the credentials say about the principal wins over anything else
        ctx["aws:PrincipalArn"] = principal.base_arn
        ctx["aws:PrincipalAccount"] = principal.account
        ctx["aws:PrincipalType"] = principal.kind
        if principal.user:
            ctx["aws:username"] = principal.user
        for tag, value in (own_tags or {}).items():  # the user's or the role's own tags ...
            ctx[f"aws:PrincipalTag/{tag}"] = value
        for tag, value in principal.session_tags:  # ... and a session's tags win over its role's, as in AWS
            ctx[f"aws:PrincipalTag/{tag}"] = value
        ctx["aws:userid"] = f"{principal.role_id}:{principal.session}" if principal.role else \
            principal.user_id or principal.account
        return ctx

    async def authorize_trust(self, principal: Principal, action: str, role: str, trust_policy: str,
                              context: Context, extra: Mapping[str, str]) -> Decision:
        """AssumeRole: the trust policy must name the caller (or its account, and then the caller's own
        identity policies must allow the action too); an explicit deny anywhere refuses."""
        ctx = {**self._context(principal, context, await self.identity.entities.principal_tags(principal)), **extra}
        owner = role.split(":")[4]
        role_of = principal.base_arn if principal.role else ""
        request = AuthzRequest(principal.arn, principal.account, action, role, owner, ctx, role_of)
        trust = parse_policy(trust_policy, "repository")
        if ":oidc-provider/" in principal.arn or ":saml-provider/" in principal.arn:
            # federation (web identity, SAML): only a trust statement naming the provider
            return evaluate(request, (), trust)
        if not await self.identity.principal_exists(principal):
            return Decision(False, f"the principal {principal.arn} no longer exists")
        identity = await self.identity.identity_policies(principal)
        full = evaluate(request, identity, trust)
        if not full.allowed:
            return full
        if evaluate(request, (), trust).allowed:  # named in the trust policy
            return full
        # named by account only: the caller's identity policies decide, as they do across accounts
        as_foreign = AuthzRequest(principal.arn, principal.account, action, role, "000000000000", ctx, role_of)
        return evaluate(as_foreign, identity, trust)

    async def authorize(self, principal: Principal, action: str, resource: str, context: Context) -> Decision:
        self._fresh()
        proposed = context.proposed_repository_policy  # SetRepositoryPolicy's lock-out check: never cached
        key = (principal.arn, principal.user_id or principal.role_id or "", principal.session_policy or "",
               repr(principal.session_tags), action, resource, context.source_ip,
               repr(sorted(context.extra.items())) if context.extra else "")
        hit = self._decisions.get(key) if proposed is None else None
        if hit is not None:
            return hit
        if not await self.identity.principal_exists(principal):  # its credentials outlived it
            return Decision(False, f"the principal {principal.arn} no longer exists")
        account, region, name = _parse_arn(resource)
        if proposed is not None and name:
            resource_policy: Policy | None = parse_policy(proposed, "repository")
        else:
            resource_policy = await self._policy((account, region, name), "repository") if name else None
        registry_policy = await self._policy((account, region), "registry") if account else None
        if registry_policy is not None and self._v1.get((account, region)) and action not in _V1_ACTIONS:
            registry_policy = None
        ctx = self._context(principal, context, await self.identity.entities.principal_tags(principal))
        if name and self.resource_tags is not None:
            for k, v in (await self.resource_tags(account, region, name)).items():
                ctx[f"aws:ResourceTag/{k}"] = v
                ctx[f"ecr:ResourceTag/{k}"] = v
        request = AuthzRequest(principal.arn, principal.account, action, resource, account or principal.account, ctx,
                               principal.base_arn if principal.role else "")
        identity = await self.identity.identity_policies(principal)
        decision = evaluate(request, identity, resource_policy, registry_policy)
        if decision.allowed and principal.session_policy:  # a session policy can only narrow the role
            narrowed = evaluate(request, (parse_policy(principal.session_policy, "identity"),))
            if not narrowed.allowed:
                decision = Decision(False, f"the session policy does not allow it ({narrowed.reason})")
        if proposed is None and len(self._decisions) < 100_000:
            self._decisions[key] = decision
        return decision
