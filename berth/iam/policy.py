"""The IAM policy language and its evaluation: one pure function for every authorization decision.

    policy = parse_policy(text, "repository")          # or "identity", "registry"; PolicyError if invalid
    decision = evaluate(request, identity_policies, resource_policy=policy, registry_policy=None)

Evaluation follows AWS's logic for identity-based and resource-based policies:
1. an explicit Deny in any applicable policy wins;
2. same account (principal_account == resource_account): allowed if an identity policy allows, or
   a resource policy (repository or registry) allows this principal by its ARN or by "*". A
   resource policy naming the account itself ("123456789012", "arn:aws:iam::123456789012:root")
   delegates to the account's identity policies, as in AWS;
3. cross account: allowed only if the caller's identity policies allow AND the resource owner's
   repository policy or registry policy allows the principal (by ARN, account or "*");
4. a service principal ("codebuild.amazonaws.com") has no identity policies: only a resource
   policy statement naming it (or "*") allows it;
5. otherwise denied ("no allow").
The account root or an administrator is not special-cased: callers pass their identity policies.
NotPrincipal follows AWS: a principal is exempt only if every entity of its chain is listed, i.e.
its account (id or root ARN) and, unless it is the root, its own ARN.
A policy variable with no value (and no default) makes its Resource pattern or condition not match.
The caller passes the registry policy only where it applies (REGISTRY_POLICY_SCOPE V2, or the
actions V1 enforces); it is a resource policy whose Resource must match.

Parsed policies are immutable, hashable (by kind and canonical JSON) and hold pre-compiled
patterns, so callers cache them by document text and evaluation does no parsing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from berth import jsonguard
from berth.iam.conditions import Clause, EvalContext, parse_conditions
from berth.iam.policy_patterns import (
    PolicyError,
    Template,
    compile_pattern,
    compile_patterns,
    parse_template,
)

__all__ = [
    "AuthzRequest",
    "Decision",
    "Policy",
    "PolicyError",
    "PolicyKind",
    "PrincipalSet",
    "Statement",
    "evaluate",
    "parse_policy",
]

PolicyKind = Literal["identity", "repository", "registry"]
_KINDS: tuple[str, ...] = ("identity", "repository", "registry")
_VERSIONS = ("2012-10-17", "2008-10-17")
_VARIABLES_VERSION = "2012-10-17"  # policy variables exist from this version on

_TOP_KEYS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_KEYS = frozenset(
    {
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Principal",
        "NotPrincipal",
        "Condition",
    }
)
_ACTION = re.compile(r"^(?:\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+)$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ROOT_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")
_PRINCIPAL_ARN = re.compile(
    r"^arn:aws[a-z-]*:(?:iam::\d{12}:(?:user|role|federated-user)/\S+|sts::\d{12}:(?:assumed-role|federated-user)/\S+)$"
)
_SERVICE = re.compile(r"^[a-z0-9-]+(?:\.[a-z0-9-]+)+$", re.IGNORECASE)
_FEDERATED = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(?:oidc-provider|saml-provider)/\S+$")

# How a resource-policy statement's Principal matched the request (0: it did not).
_NO_MATCH, _BY_ACCOUNT, _BY_NAME = 0, 1, 2


# --- requests and decisions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    """One authorization question. `context` holds the condition keys (aws:SourceIp, …)."""

    principal_arn: str  # an IAM ARN, or a service principal name such as "ecr.amazonaws.com"
    principal_account: str
    action: str  # "ecr:BatchGetImage"
    resource_arn: str  # "arn:aws:ecr:us-east-1:123456789012:repository/name", or "*"
    resource_account: str
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    # A role session's role (`arn:aws:iam::<acct>:role/<path><name>`): a resource policy naming the role
    # names every session of it, as in AWS ("" for any other principal)
    principal_role_arn: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


# --- parsed policies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class PrincipalSet:
    """The principals named by a Principal or NotPrincipal element."""

    anyone: bool
    accounts: frozenset[str]  # "123456789012" and "arn:aws:iam::123456789012:root" alike
    arns: frozenset[str]
    services: frozenset[str]  # lower-cased

    def match(self, principal_arn: str, principal_account: str, role_arn: str = "") -> int:
        if self.anyone:
            return _BY_NAME
        if principal_arn in self.arns or principal_arn.lower() in self.services or role_arn in self.arns:
            return _BY_NAME
        if principal_account in self.accounts:
            # The root user is named by its account; anyone else of the account is delegated to.
            return _BY_NAME if _is_root(principal_arn, principal_account) else _BY_ACCOUNT
        return _NO_MATCH

    def excludes(self, principal_arn: str, principal_account: str, role_arn: str = "") -> bool:
        """NotPrincipal: AWS checks every entity of the caller's chain, the account first, then the
        principal, so a user is exempt only if both its account and its own ARN are listed (a role
        session only if its account, its role and the session are all listed)."""
        if self.anyone:
            return True
        if not principal_arn.startswith("arn:"):  # a service principal is its own chain
            return principal_arn.lower() in self.services
        if principal_account not in self.accounts:
            return False
        if _is_root(principal_arn, principal_account):
            return True
        return principal_arn in self.arns and (not role_arn or role_arn in self.arns)


def _is_root(principal_arn: str, account: str) -> bool:
    m = _ROOT_ARN.match(principal_arn)
    return m is not None and m.group(1) == account


@dataclass(frozen=True, slots=True, eq=False)
class _Resources:
    """A Resource or NotResource element: static patterns compiled once, variables per request."""

    match_all: bool
    static: re.Pattern[str] | None
    dynamic: tuple[Template, ...]

    def match(self, resource_arn: str, ctx: EvalContext) -> tuple[bool, bool]:
        """(matched, some pattern had a variable with no value)."""
        if self.match_all or (self.static is not None and self.static.fullmatch(resource_arn)):
            return True, False
        unresolved = False
        for template in self.dynamic:
            segments = template.segments(ctx.resolve)
            if segments is None:
                unresolved = True
            elif compile_pattern(segments, arn=True).fullmatch(resource_arn):
                return True, False
        return False, unresolved


@dataclass(frozen=True, slots=True, eq=False)
class Statement:
    index: int  # 0-based position in the policy
    sid: str | None
    allow: bool
    actions: re.Pattern[str]
    not_action: bool
    resources: _Resources | None  # None: implied (a repository policy without Resource)
    not_resource: bool
    principals: PrincipalSet | None  # None in identity policies
    not_principal: bool
    conditions: tuple[Clause, ...]

    @property
    def label(self) -> str:
        return f"Sid {self.sid}" if self.sid else f"#{self.index + 1}"

    def applies(self, request: AuthzRequest, ctx: EvalContext) -> int:
        """Whether this statement applies to the request: _NO_MATCH, _BY_ACCOUNT or _BY_NAME."""
        if (self.actions.fullmatch(request.action) is None) != self.not_action:
            return _NO_MATCH
        how = _BY_NAME
        principals = self.principals
        if principals is not None:
            if self.not_principal:
                if principals.excludes(request.principal_arn, request.principal_account,
                                       request.principal_role_arn):
                    return _NO_MATCH
            else:
                how = principals.match(request.principal_arn, request.principal_account,
                                       request.principal_role_arn)
                if how == _NO_MATCH:
                    return _NO_MATCH
        if self.resources is not None:
            matched, unresolved = self.resources.match(request.resource_arn, ctx)
            if self.not_resource:
                if matched or unresolved:
                    return _NO_MATCH
            elif not matched:
                return _NO_MATCH
        for clause in self.conditions:
            if not clause.evaluate(ctx):
                return _NO_MATCH
        return how


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A parsed, validated policy. Equal and hashable by (kind, canonical JSON)."""

    kind: PolicyKind
    version: str
    policy_id: str | None
    statements: tuple[Statement, ...]
    canonical: str

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Policy):
            return NotImplemented
        return self.kind == other.kind and self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash((self.kind, self.canonical))


# --- parsing ----------------------------------------------------------------------------------


def parse_policy(document: str | bytes | Mapping[str, Any], kind: PolicyKind) -> Policy:
    """Parse and validate a policy document (JSON text or an already decoded object).

    kind: "identity" (no Principal; Resource required), "repository" (Principal required; Resource
    optional, the repository is implied) or "registry" (Principal and Resource required).
    """
    if kind not in _KINDS:
        raise ValueError(f"policy kind must be one of {', '.join(_KINDS)}, not {kind!r}")
    if isinstance(document, str | bytes | bytearray):
        try:
            jsonguard.check_depth(document)
        except jsonguard.TooDeep as exc:
            raise PolicyError(f"policy is not valid: {exc}") from None
        try:
            doc = json.loads(document, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy is not valid JSON: {exc}") from None
    else:
        doc = document
    if not isinstance(doc, Mapping):
        raise PolicyError("policy must be a JSON object")
    unknown = sorted(k for k in doc if k not in _TOP_KEYS)
    if unknown:
        raise PolicyError(f"policy has unknown element(s) {', '.join(map(repr, unknown))}")
    version = doc.get("Version", "2008-10-17")
    if version not in _VERSIONS:
        raise PolicyError(f'policy Version must be "2012-10-17" or "2008-10-17", not {version!r}')
    policy_id = doc.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise PolicyError("policy Id must be a string")
    if "Statement" not in doc:
        raise PolicyError("policy has no Statement")
    raw_statements = doc["Statement"]
    if isinstance(raw_statements, Mapping):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise PolicyError("policy Statement must be an object or a non-empty list of objects")
    variables = version == _VARIABLES_VERSION
    statements = tuple(_parse_statement(i, s, kind, variables) for i, s in enumerate(raw_statements))
    sids = [s.sid for s in statements if s.sid]
    duplicates = sorted({sid for sid in sids if sids.count(sid) > 1})
    if duplicates:
        raise PolicyError(f"statement ids must be unique, {', '.join(map(repr, duplicates))} repeated")
    try:
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"policy is not a JSON document: {exc}") from None
    return Policy(kind, version, policy_id, statements, canonical)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PolicyError(f"policy repeats the key {key!r} in one object")
        out[key] = value
    return out


def _parse_statement(index: int, raw: object, kind: str, variables: bool) -> Statement:
    where = f"Statement #{index + 1}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be an object")
    sid = raw.get("Sid")
    if sid is not None:
        if not isinstance(sid, str):
            raise PolicyError(f"{where}: Sid must be a string")
        where = f"Statement {sid!r}"
    unknown = sorted(k for k in raw if k not in _STATEMENT_KEYS)
    if unknown:
        raise PolicyError(f"{where} has unknown element(s) {', '.join(map(repr, unknown))}")

    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'{where}: Effect must be "Allow" or "Deny", not {effect!r}')

    action_key = _one_of(raw, "Action", "NotAction", where, required=True)
    assert action_key is not None
    actions = _parse_actions(raw[action_key], where, action_key)

    resource_key = _one_of(raw, "Resource", "NotResource", where, required=kind != "repository")
    resources = _parse_resources(raw[resource_key], where, resource_key, variables) if resource_key else None

    principal_key = _one_of(raw, "Principal", "NotPrincipal", where, required=False)
    principals: PrincipalSet | None = None
    if kind == "identity":
        if principal_key is not None:
            raise PolicyError(f"{where}: {principal_key} is not allowed in an identity-based policy")
    else:
        if principal_key is None:
            raise PolicyError(f"{where}: a {kind} policy statement needs a Principal or NotPrincipal")
        if principal_key == "NotPrincipal" and effect == "Allow":
            raise PolicyError(f'{where}: NotPrincipal can only be used with "Effect": "Deny"')
        principals = _parse_principal(raw[principal_key], where, principal_key)

    conditions = parse_conditions(raw["Condition"], variables=variables) if "Condition" in raw else ()
    return Statement(
        index=index,
        sid=sid or None,
        allow=effect == "Allow",
        actions=actions,
        not_action=action_key == "NotAction",
        resources=resources,
        not_resource=resource_key == "NotResource",
        principals=principals,
        not_principal=principal_key == "NotPrincipal",
        conditions=conditions,
    )


def _one_of(raw: Mapping[str, Any], name: str, negated: str, where: str, *, required: bool) -> str | None:
    if name in raw and negated in raw:
        raise PolicyError(f"{where} has both {name} and {negated}")
    if name in raw:
        return name
    if negated in raw:
        return negated
    if required:
        raise PolicyError(f"{where} needs {name} or {negated}")
    return None


def _strings(value: object, where: str, element: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PolicyError(f"{where}: {element} must not be empty")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise PolicyError(
                f"{where}: {element} must be a non-empty string or a list of them, got {item!r}"
            )
        out.append(item)
    return out


def _parse_actions(value: object, where: str, element: str) -> re.Pattern[str]:
    patterns = []
    for action in _strings(value, where, element):
        if not _ACTION.match(action):
            raise PolicyError(
                f'{where}: {element} {action!r} is not valid: expected "*" or service:action, '
                "e.g. ecr:BatchGetImage"
            )
        patterns.append([(action, False)])
    return compile_patterns(patterns, ignore_case=True)


def _parse_resources(value: object, where: str, element: str, variables: bool) -> _Resources:
    static = []
    dynamic = []
    match_all = False
    for resource in _strings(value, where, element):
        if resource != "*" and not resource.startswith("arn:"):
            raise PolicyError(f'{where}: {element} {resource!r} must be "*" or an ARN')
        template = parse_template(resource, variables=variables)
        if not template.is_static:
            dynamic.append(template)
        elif resource == "*":
            match_all = True
        else:
            segments = template.segments()
            assert segments is not None
            static.append(segments)
    return _Resources(match_all, compile_patterns(static, arn=True) if static else None, tuple(dynamic))


def _parse_principal(value: object, where: str, element: str) -> PrincipalSet:
    if value == "*":
        return PrincipalSet(True, frozenset(), frozenset(), frozenset())
    if not isinstance(value, Mapping) or not value:
        raise PolicyError(f'{where}: {element} must be "*" or an object such as {{"AWS": "123456789012"}}')
    anyone = False
    accounts: set[str] = set()
    arns: set[str] = set()
    services: set[str] = set()
    for ptype, names in value.items():
        if ptype == "AWS":
            for name in _strings(names, where, f"{element} AWS"):
                root = _ROOT_ARN.match(name)
                if name == "*":
                    anyone = True
                elif "*" in name or "?" in name:
                    raise PolicyError(
                        f"{where}: invalid {element} {name!r}: wildcards are not allowed in a principal; "
                        'use "*" with a condition on aws:PrincipalArn'
                    )
                elif _ACCOUNT_ID.match(name):
                    accounts.add(name)
                elif root is not None:
                    accounts.add(root.group(1))
                elif _PRINCIPAL_ARN.match(name):
                    arns.add(name)
                else:
                    raise PolicyError(
                        f'{where}: invalid {element} {name!r}: expected "*", a 12-digit account id, '
                        "or an IAM ARN such as arn:aws:iam::123456789012:root or …:user/name"
                    )
        elif ptype == "Service":
            for name in _strings(names, where, f"{element} Service"):
                if not _SERVICE.match(name):
                    raise PolicyError(
                        f"{where}: invalid {element} Service {name!r}: expected a service principal "
                        "such as ecr.amazonaws.com"
                    )
                services.add(name.lower())
        elif ptype == "Federated":  # web identity: the OIDC provider's ARN is the caller of AssumeRoleWithWebIdentity
            for name in _strings(names, where, f"{element} Federated"):
                if not _FEDERATED.match(name):
                    raise PolicyError(
                        f"{where}: invalid {element} Federated {name!r}: expected an identity provider ARN "
                        "such as arn:aws:iam::123456789012:oidc-provider/token.actions.example.com"
                    )
                arns.add(name)
        else:
            raise PolicyError(f'{where}: unsupported {element} type {ptype!r} (supported: "AWS", "Service", '
                              '"Federated")')
    return PrincipalSet(anyone, frozenset(accounts), frozenset(arns), frozenset(services))


# --- evaluation -------------------------------------------------------------------------------


def evaluate(
    request: AuthzRequest,
    identity_policies: Iterable[Policy],
    resource_policy: Policy | None = None,
    registry_policy: Policy | None = None,
) -> Decision:
    """Decide one request (see the module docstring for the rules)."""
    ctx = _context(request)

    # Matching statements are kept as (where, statement) and described only for the decision.
    identity_allow: tuple[str, Statement] | None = None
    for n, policy in enumerate(identity_policies, 1):
        if policy.kind != "identity":
            raise ValueError(f"expected a identity policy, got a {policy.kind} policy")
        for st in policy.statements:
            if st.applies(request, ctx):
                if not st.allow:
                    return Decision(False, f"explicit deny in {_where(f'identity policy #{n}', st)}")
                if identity_allow is None:
                    identity_allow = (f"identity policy #{n}", st)

    named_allow: tuple[str, Statement] | None = None  # a resource policy allows the principal by name or "*"
    account_allow: tuple[str, Statement] | None = None  # a resource policy allows the principal's account
    for name, kind, maybe_policy in (
        ("repository policy", "repository", resource_policy),
        ("registry policy", "registry", registry_policy),
    ):
        if maybe_policy is None:
            continue
        if maybe_policy.kind != kind:
            raise ValueError(f"expected a {kind} policy, got a {maybe_policy.kind} policy")
        for st in maybe_policy.statements:
            how = st.applies(request, ctx)
            if not how:
                continue
            if not st.allow:
                return Decision(False, f"explicit deny in {_where(name, st)}")
            if how == _BY_NAME:
                if named_allow is None:
                    named_allow = (name, st)
            elif account_allow is None:
                account_allow = (name, st)

    if not request.principal_arn.startswith("arn:"):
        # A service principal has no identity policies: only a resource policy naming it grants.
        if named_allow is not None:
            return Decision(True, f"allowed by {_where(*named_allow)}")
        return Decision(False, f"no allow: no resource policy statement allows {_what(request)}")

    if request.principal_account == request.resource_account:
        if identity_allow is not None:
            return Decision(True, f"allowed by {_where(*identity_allow)}")
        if named_allow is not None:
            return Decision(True, f"allowed by {_where(*named_allow)}")
        if account_allow is not None:
            return Decision(
                False,
                f"no allow: {_where(*account_allow)} grants the whole account, which leaves the decision "
                f"to its identity policies, and none allows {_what(request)}",
            )
        return Decision(False, f"no allow: no identity or resource policy statement allows {_what(request)}")

    resource_allow = named_allow or account_allow
    if identity_allow is not None and resource_allow is not None:
        return Decision(
            True, f"cross-account: allowed by {_where(*identity_allow)} and {_where(*resource_allow)}"
        )
    if identity_allow is not None:
        return Decision(
            False,
            f"no allow: cross-account {_what(request)} is allowed by {_where(*identity_allow)} but by no "
            f"repository or registry policy of account {request.resource_account}",
        )
    if resource_allow is not None:
        return Decision(
            False,
            f"no allow: cross-account {_what(request)} is allowed by {_where(*resource_allow)} but by no "
            "identity policy of the caller",
        )
    return Decision(False, f"no allow: no identity or resource policy statement allows {_what(request)}")


def _where(source: str, statement: Statement) -> str:
    return f"{source} statement {statement.label}"


def _what(request: AuthzRequest) -> str:
    return f"{request.principal_arn} {request.action} on {request.resource_arn}"


def _context(request: AuthzRequest) -> EvalContext:
    ctx = EvalContext(request.context)
    if request.principal_arn.startswith("arn:"):
        ctx.setdefault("aws:principalarn", request.principal_arn)
    elif request.principal_arn:
        ctx.setdefault("aws:principalservicename", request.principal_arn)
    if request.principal_account:
        ctx.setdefault("aws:principalaccount", request.principal_account)
    if request.resource_account:
        ctx.setdefault("aws:resourceaccount", request.resource_account)
    return ctx
