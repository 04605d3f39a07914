"""The IAM policy language and its evaluation, against examples from AWS's IAM and ECR guides.

Sources of the policy documents (adapted only in account ids, names and regions):
- ECR "Private repository policy examples": allow one or more users, allow another account,
  allow some users to pull and others to push, deny all pulls, service access with aws:SourceArn;
- ECR "Private registry permissions" (replication, pull through cache) and ECR-REFERENCE §5.3–5.4;
- IAM "Condition operators", "Multivalued context key examples", "Policy variables",
  "NotPrincipal", "Policy evaluation logic" (same-account and cross-account), and the identity-policy
  examples (deny by source IP, date ranges, own access keys, MFA with NotAction, home folders).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from berth.iam.policy import AuthzRequest, Policy, PolicyError, evaluate, parse_policy

OWN = "123456789012"  # the registry's account (owner of the repositories)
OTHER = "111122223333"  # another account
THIRD = "444455556666"
REPO = f"arn:aws:ecr:us-east-1:{OWN}:repository/project-a/nginx-web-app"

ALLOW, DENY = True, False

PULL = ["ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer"]
PUSH = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]


def user(name: str, account: str = OWN) -> str:
    return f"arn:aws:iam::{account}:user/{name}"


def repo(name: str = "project-a/nginx-web-app", account: str = OWN, region: str = "us-east-1") -> str:
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


def req(
    principal: str,
    action: str = "ecr:BatchGetImage",
    resource: str = REPO,
    context: Mapping[str, str | Sequence[str]] | None = None,
    principal_account: str | None = None,
) -> AuthzRequest:
    if principal_account is None:
        principal_account = principal.split(":")[4] if principal.startswith("arn:") else ""
    # An ARN without an account (an S3 bucket, "*") stands for a resource of the caller's account.
    resource_account = (resource.split(":")[4] if resource.startswith("arn:") else "") or principal_account
    return AuthzRequest(principal, principal_account, action, resource, resource_account, dict(context or {}))


def doc(*statements: dict[str, Any], version: str = "2012-10-17") -> dict[str, Any]:
    return {"Version": version, "Statement": list(statements)}


# --- identity policies ------------------------------------------------------------------------

ADMIN = doc({"Effect": "Allow", "Action": "*", "Resource": "*"})  # AdministratorAccess
ECR_ALL = doc({"Effect": "Allow", "Action": "ecr:*", "Resource": "*"})
READ_ONLY = doc(  # shaped like AmazonEC2ContainerRegistryReadOnly
    {
        "Effect": "Allow",
        "Action": ["ecr:GetAuthorizationToken", "ecr:Describe*", "ecr:List*", *PULL],
        "Resource": "*",
    }
)
POWER_USER = doc({"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"], "Resource": "*"})
DENY_OUTSIDE_IPS = doc(  # IAM: "AWS: Denies access to AWS based on the source IP"
    {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]},
            "Bool": {"aws:ViaAWSService": "false"},
        },
    }
)
ALLOW_FROM_IPS = doc(
    {
        "Effect": "Allow",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}},
    }
)
DATE_WINDOW = doc(  # IAM: "Allows access within specific dates"
    {
        "Effect": "Allow",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {
            "DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"},
            "DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"},
        },
    }
)
EPOCH_DEADLINE = doc(
    {
        "Effect": "Allow",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {"DateLessThanEquals": {"aws:EpochTime": "1593561599"}},
    }
)
OWN_ACCESS_KEYS = doc(  # IAM: "Allows IAM users to rotate their own access keys"
    {
        "Effect": "Allow",
        "Action": ["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:*AccessKeys", "iam:UpdateAccessKey"],
        "Resource": "arn:aws:iam::*:user/${aws:username}",
    }
)
OWN_REPOSITORIES = doc(
    {
        "Effect": "Allow",
        "Action": ["ecr:*"],
        "Resource": "arn:aws:ecr:*:${aws:PrincipalAccount}:repository/${aws:username}/*",
    }
)
OWN_REPOSITORIES_2008 = doc(
    {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:username}/*"},
    version="2008-10-17",
)
HOME_FOLDER = doc(  # IAM / S3: "Allows each IAM user access to a folder in a bucket"
    {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::amzn-s3-demo-bucket",
        "Condition": {"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}},
    }
)
MFA_REQUIRED = doc(  # IAM: "Allows MFA-authenticated IAM users to manage their own MFA device"
    {"Sid": "AllowEverything", "Effect": "Allow", "Action": "*", "Resource": "*"},
    {
        "Sid": "BlockMostAccessUnlessSignedInWithMFA",
        "Effect": "Deny",
        "NotAction": [
            "iam:CreateVirtualMFADevice",
            "iam:EnableMFADevice",
            "iam:ListMFADevices",
            "iam:ListUsers",
            "iam:ListVirtualMFADevices",
            "iam:ResyncMFADevice",
        ],
        "Resource": "*",
        "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
    },
)
PUSH_ONLY_TO_DEV = doc(
    {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
    {
        "Sid": "PushOnlyToDev",
        "Effect": "Deny",
        "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload"],
        "NotResource": f"arn:aws:ecr:*:{OWN}:repository/dev/*",
    },
)
TAG_KEYS_ALL = doc(  # IAM: multivalued context keys, ForAllValues
    {
        "Effect": "Allow",
        "Action": "ecr:CreateRepository",
        "Resource": "*",
        "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}},
    }
)
TAG_KEYS_ALL_NOT_NULL = doc(
    {
        "Effect": "Allow",
        "Action": "ecr:CreateRepository",
        "Resource": "*",
        "Condition": {
            "ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]},
            "Null": {"aws:TagKeys": "false"},
        },
    }
)
TAG_KEYS_ANY = doc(
    {
        "Effect": "Allow",
        "Action": "ecr:CreateRepository",
        "Resource": "*",
        "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment"]}},
    }
)
DENY_TAG_PREFIX = doc(  # IAM: "Deny policy with condition set operator ForAnyValue"
    {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
    {
        "Sid": "DenyRestrictedTagKeys",
        "Effect": "Deny",
        "Action": "ecr:TagResource",
        "Resource": "*",
        "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": ["key1*"]}},
    },
)
REQUIRE_TEAM_TAG = doc(
    {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
    {
        "Sid": "DenyUntagged",
        "Effect": "Deny",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {"Null": {"aws:ResourceTag/team": "true"}},
    },
)
DEPARTMENT_IGNORE_CASE = doc(
    {
        "Effect": "Allow",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {"aws:PrincipalTag/department": "Engineering"}},
    }
)
MAX_KEYS = doc(  # IAM: numeric condition operators, s3:max-keys
    {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::amzn-s3-demo-bucket",
        "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}},
    }
)
DENY_INSECURE = doc(
    {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
    {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    },
)
BINARY = doc(
    {
        "Effect": "Allow",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {"BinaryEquals": {"example:key": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}},
    }
)
DEV_TAG_IF_EXISTS = doc(
    {
        "Effect": "Allow",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {"StringEqualsIfExists": {"ecr:ResourceTag/env": "dev"}},
    }
)
BATCH_ONLY = doc({"Effect": "Allow", "Action": ["ECR:batch*", "ecr:Get?ownloadUrlForLayer"], "Resource": "*"})
PROJECT_A_ANY_REGION = doc(
    {"Effect": "Allow", "Action": "ecr:*", "Resource": f"arn:aws:ecr:*:{OWN}:repository/project-a/*"}
)
LITERAL_BRACKETS = doc(
    {"Effect": "Allow", "Action": "ecr:*", "Resource": f"arn:aws:ecr:*:{OWN}:repository/a[1]"}
)
DENY_DELETE = doc(
    {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
    {"Sid": "NoDeletes", "Effect": "Deny", "Action": "ecr:BatchDeleteImage", "Resource": "*"},
)

# --- repository and registry policies ---------------------------------------------------------

RP_USERS = doc(  # ECR: "Allow one or more users"
    {
        "Sid": "AllowPushPull",
        "Effect": "Allow",
        "Principal": {"AWS": [user("push-pull-user-1"), user("push-pull-user-2")]},
        "Action": sorted({*PULL, *PUSH}),
    }
)
RP_OTHER_ACCOUNT_PUSH = doc(  # ECR: "Allow another account"
    {
        "Sid": "AllowCrossAccountPush",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
        "Action": PUSH,
        "Resource": "*",
    }
)
RP_OTHER_ACCOUNT_ID = doc(
    {"Sid": "AllowAccountPull", "Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": PULL},
    version="2008-10-17",
)
RP_PULL_AND_ADMIN = doc(  # ECR: "Allow some users to pull, others to push and pull"
    {
        "Sid": "AllowPull",
        "Effect": "Allow",
        "Principal": {"AWS": [user("pull-user-1"), user("pull-user-2")]},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
    },
    {"Sid": "AllowAll", "Effect": "Allow", "Principal": {"AWS": user("admin-user")}, "Action": ["ecr:*"]},
)
RP_DENY_PULL = doc(  # ECR: "Deny all"
    {
        "Sid": "DenyPull",
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
    }
)
RP_PUBLIC_PULL = doc({"Sid": "AllowPublicPull", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": PULL})
RP_ORG_PULL = doc(  # ECR-REFERENCE §5.3
    {
        "Sid": "AllowCrossAccountPull",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
        "Action": PULL,
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-xxxx"}},
    }
)
RP_ORG_PERIMETER = doc(
    {"Sid": "AllowEveryone", "Effect": "Allow", "Principal": "*", "Action": PULL},
    {
        "Sid": "DenyOutsideOrg",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "ecr:*",
        "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-xxxx"}},
    },
)
RP_CODEBUILD = doc(  # ECR: service principal access, scoped with aws:SourceArn and aws:SourceAccount
    {
        "Sid": "CodeBuildAccess",
        "Effect": "Allow",
        "Principal": {"Service": "codebuild.amazonaws.com"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Condition": {
            "ArnLike": {"aws:SourceArn": f"arn:aws:codebuild:us-east-1:{OWN}:project/project-name"},
            "StringEquals": {"aws:SourceAccount": OWN},
        },
    }
)
RP_CI_ROLES = doc(
    {
        "Sid": "AllowCiRoles",
        "Effect": "Allow",
        "Principal": "*",
        "Action": PUSH,
        "Condition": {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{OTHER}:role/ci-*"}},
    }
)
RP_NOT_PRINCIPAL = doc(  # IAM: "NotPrincipal with Deny" (the user and its account both listed)
    {"Sid": "AllowThirdAccount", "Effect": "Allow", "Principal": {"AWS": THIRD}, "Action": "ecr:*"},
    {
        "Sid": "DenyAllButBob",
        "Effect": "Deny",
        "NotPrincipal": {"AWS": [user("Bob", THIRD), f"arn:aws:iam::{THIRD}:root"]},
        "Action": "ecr:*",
    },
)
RP_NOT_PRINCIPAL_USER_ONLY = doc(
    {"Sid": "AllowThirdAccount", "Effect": "Allow", "Principal": {"AWS": THIRD}, "Action": "ecr:*"},
    {
        "Sid": "DenyAllButBob",
        "Effect": "Deny",
        "NotPrincipal": {"AWS": user("Bob", THIRD)},
        "Action": "ecr:*",
    },
)
RP_NOT_PRINCIPAL_ACCOUNT_ONLY = doc(
    {"Sid": "AllowThirdAccount", "Effect": "Allow", "Principal": {"AWS": THIRD}, "Action": "ecr:*"},
    {"Sid": "DenyAllButRoot", "Effect": "Deny", "NotPrincipal": {"AWS": THIRD}, "Action": "ecr:*"},
)
RP_OWN_ACCOUNT = doc({"Sid": "OwnAccount", "Effect": "Allow", "Principal": {"AWS": OWN}, "Action": "ecr:*"})
RP_OTHER_REPOSITORY = doc(
    {
        "Sid": "OnlyOtherRepo",
        "Effect": "Allow",
        "Principal": {"AWS": user("alice")},
        "Action": "ecr:*",
        "Resource": repo("other"),
    }
)
REG_REPLICATION = doc(  # ECR-REFERENCE §5.4: cross-account replication
    {
        "Sid": "ReplicationAccessCrossAccount",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": f"arn:aws:ecr:us-west-2:{OWN}:repository/*",
    }
)
REG_PULL_THROUGH = doc(  # ECR: pull through cache registry policy
    {
        "Sid": "PullThroughCache",
        "Effect": "Allow",
        "Principal": {"AWS": user("builder")},
        "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
        "Resource": f"arn:aws:ecr:us-east-1:{OWN}:repository/ecr-public/*",
    }
)


def case(
    case_id: str,
    request: AuthzRequest,
    allowed: bool,
    reason: str,
    identity: Sequence[dict[str, Any]] = (),
    repository: dict[str, Any] | None = None,
    registry: dict[str, Any] | None = None,
) -> Any:
    return pytest.param(request, identity, repository, registry, allowed, reason, id=case_id)


IN_RANGE = {"aws:CurrentTime": "2020-05-15T12:00:00Z"}
alice, bob = user("alice"), user("bob")
other_dev = user("dev", OTHER)

CASES = [
    # --- same account: either side may allow -----------------------------------------------
    case(
        "admin-identity-allows-anything",
        req(alice, "ecr:DeleteRepository"),
        ALLOW,
        "identity policy #1",
        [ADMIN],
    ),
    case("no-policies-default-deny", req(alice), DENY, "no allow"),
    case("read-only-allows-pull", req(alice, "ecr:BatchGetImage"), ALLOW, "identity policy #1", [READ_ONLY]),
    case("read-only-wildcard-describe", req(alice, "ecr:DescribeImages"), ALLOW, "identity", [READ_ONLY]),
    case("read-only-denies-push", req(alice, "ecr:PutImage"), DENY, "no allow", [READ_ONLY]),
    case(
        "rp-users-allows-named-user-without-identity",
        req(user("push-pull-user-1"), "ecr:PutImage"),
        ALLOW,
        "repository policy statement Sid AllowPushPull",
        repository=RP_USERS,
    ),
    case(
        "rp-users-other-user-denied",
        req(user("push-pull-user-3"), "ecr:PutImage"),
        DENY,
        "no allow",
        repository=RP_USERS,
    ),
    case(
        "rp-users-action-not-listed",
        req(user("push-pull-user-2"), "ecr:DeleteRepository"),
        DENY,
        "no allow",
        repository=RP_USERS,
    ),
    case(
        "rp-pull-user-can-pull",
        req(user("pull-user-1"), "ecr:GetDownloadUrlForLayer"),
        ALLOW,
        "Sid AllowPull",
        repository=RP_PULL_AND_ADMIN,
    ),
    case(
        "rp-pull-user-cannot-push",
        req(user("pull-user-1"), "ecr:PutImage"),
        DENY,
        "no allow",
        repository=RP_PULL_AND_ADMIN,
    ),
    case(
        "rp-admin-user-ecr-star",
        req(user("admin-user"), "ecr:SetRepositoryPolicy"),
        ALLOW,
        "Sid AllowAll",
        repository=RP_PULL_AND_ADMIN,
    ),
    case(
        "rp-star-principal-same-account-direct",
        req(alice),
        ALLOW,
        "Sid AllowPublicPull",
        repository=RP_PUBLIC_PULL,
    ),
    case(
        "rp-own-account-principal-delegates-to-identity",
        req(alice, "ecr:PutImage"),
        DENY,
        "grants the whole account",
        repository=RP_OWN_ACCOUNT,
    ),
    case(
        "rp-own-account-principal-with-identity",
        req(alice, "ecr:PutImage"),
        ALLOW,
        "identity policy #1",
        [ECR_ALL],
        RP_OWN_ACCOUNT,
    ),
    case(
        "rp-own-account-root-user-named",
        req(f"arn:aws:iam::{OWN}:root", "ecr:PutImage"),
        ALLOW,
        "Sid OwnAccount",
        repository=RP_OWN_ACCOUNT,
    ),
    case("rp-explicit-resource-must-match", req(alice), DENY, "no allow", repository=RP_OTHER_REPOSITORY),
    case(
        "rp-explicit-resource-matches",
        req(alice, resource=repo("other")),
        ALLOW,
        "Sid OnlyOtherRepo",
        repository=RP_OTHER_REPOSITORY,
    ),
    # --- explicit deny wins ---------------------------------------------------------------
    case(
        "rp-deny-all-beats-identity-allow",
        req(alice),
        DENY,
        "explicit deny in repository policy statement Sid DenyPull",
        [ADMIN],
        RP_DENY_PULL,
    ),
    case(
        "rp-deny-all-leaves-push",
        req(alice, "ecr:PutImage"),
        ALLOW,
        "identity policy #1",
        [ADMIN],
        RP_DENY_PULL,
    ),
    case(
        "identity-deny-beats-rp-allow",
        req(user("admin-user"), "ecr:BatchDeleteImage"),
        DENY,
        "explicit deny in identity policy #1 statement Sid NoDeletes",
        [DENY_DELETE],
        RP_PULL_AND_ADMIN,
    ),
    case(
        "identity-deny-in-second-policy",
        req(alice, "ecr:BatchDeleteImage"),
        DENY,
        "explicit deny in identity policy #2",
        [ECR_ALL, DENY_DELETE],
    ),
    # --- cross account: both sides needed -------------------------------------------------
    case(
        "cross-account-push-both-sides",
        req(other_dev, "ecr:PutImage"),
        ALLOW,
        "cross-account: allowed by identity policy #1",
        [ECR_ALL],
        RP_OTHER_ACCOUNT_PUSH,
    ),
    case(
        "cross-account-push-no-identity",
        req(other_dev, "ecr:PutImage"),
        DENY,
        "by no identity policy",
        repository=RP_OTHER_ACCOUNT_PUSH,
    ),
    case(
        "cross-account-identity-only",
        req(other_dev, "ecr:PutImage"),
        DENY,
        f"by no repository or registry policy of account {OWN}",
        [ECR_ALL],
    ),
    case(
        "cross-account-action-not-granted",
        req(other_dev, "ecr:BatchGetImage"),
        DENY,
        "no allow",
        [ECR_ALL],
        RP_OTHER_ACCOUNT_PUSH,
    ),
    case(
        "cross-account-bare-account-id-2008",
        req(other_dev),
        ALLOW,
        "Sid AllowAccountPull",
        [READ_ONLY],
        RP_OTHER_ACCOUNT_ID,
    ),
    case(
        "cross-account-unnamed-account",
        req(user("x", THIRD), "ecr:PutImage"),
        DENY,
        "no allow",
        [ADMIN],
        RP_OTHER_ACCOUNT_PUSH,
    ),
    case(
        "cross-account-star-principal-needs-identity",
        req(other_dev),
        DENY,
        "by no identity policy",
        repository=RP_PUBLIC_PULL,
    ),
    case(
        "cross-account-star-principal-with-identity",
        req(other_dev),
        ALLOW,
        "Sid AllowPublicPull",
        [READ_ONLY],
        RP_PUBLIC_PULL,
    ),
    case(
        "cross-account-org-condition-met",
        req(other_dev, context={"aws:PrincipalOrgID": "o-xxxx"}),
        ALLOW,
        "Sid AllowCrossAccountPull",
        [READ_ONLY],
        RP_ORG_PULL,
    ),
    case("cross-account-org-condition-missing", req(other_dev), DENY, "no allow", [READ_ONLY], RP_ORG_PULL),
    case(
        "cross-account-arnlike-principal-arn",
        req(f"arn:aws:iam::{OTHER}:role/ci-main", "ecr:PutImage"),
        ALLOW,
        "Sid AllowCiRoles",
        [ECR_ALL],
        RP_CI_ROLES,
    ),
    case(
        "cross-account-arnlike-other-role",
        req(f"arn:aws:iam::{OTHER}:role/deploy", "ecr:PutImage"),
        DENY,
        "no allow",
        [ECR_ALL],
        RP_CI_ROLES,
    ),
    # --- NotPrincipal (AWS: list the user and its account to exempt the user) -----------
    case(
        "notprincipal-bob-exempt",
        req(user("Bob", THIRD)),
        ALLOW,
        "cross-account",
        [ECR_ALL],
        RP_NOT_PRINCIPAL,
    ),
    case(
        "notprincipal-alice-denied",
        req(user("Alice", THIRD)),
        DENY,
        "explicit deny in repository policy statement Sid DenyAllButBob",
        [ECR_ALL],
        RP_NOT_PRINCIPAL,
    ),
    case(
        "notprincipal-user-only-still-denied",
        req(user("Bob", THIRD)),
        DENY,
        "Sid DenyAllButBob",
        [ECR_ALL],
        RP_NOT_PRINCIPAL_USER_ONLY,
    ),
    case(
        "notprincipal-account-only-user-denied",
        req(user("Bob", THIRD)),
        DENY,
        "Sid DenyAllButRoot",
        [ECR_ALL],
        RP_NOT_PRINCIPAL_ACCOUNT_ONLY,
    ),
    case(
        "notprincipal-account-only-root-exempt",
        req(f"arn:aws:iam::{THIRD}:root"),
        ALLOW,
        "cross-account",
        [ECR_ALL],
        RP_NOT_PRINCIPAL_ACCOUNT_ONLY,
    ),
    # --- registry policy ------------------------------------------------------------------
    case(
        "registry-replication-cross-account",
        req(other_dev, "ecr:ReplicateImage", repo("app", region="us-west-2")),
        ALLOW,
        "registry policy statement Sid ReplicationAccessCrossAccount",
        [ECR_ALL],
        registry=REG_REPLICATION,
    ),
    case(
        "registry-resource-must-match-region",
        req(other_dev, "ecr:ReplicateImage", repo("app")),
        DENY,
        "no allow",
        [ECR_ALL],
        registry=REG_REPLICATION,
    ),
    case(
        "registry-pull-through-same-account",
        req(user("builder"), "ecr:BatchImportUpstreamImage", repo("ecr-public/nginx")),
        ALLOW,
        "Sid PullThroughCache",
        registry=REG_PULL_THROUGH,
    ),
    case(
        "registry-pull-through-outside-prefix",
        req(user("builder"), "ecr:CreateRepository", repo("mine/nginx")),
        DENY,
        "no allow",
        registry=REG_PULL_THROUGH,
    ),
    # --- service principals ---------------------------------------------------------------
    case(
        "service-principal-with-source-arn",
        req(
            "codebuild.amazonaws.com",
            context={
                "aws:SourceArn": f"arn:aws:codebuild:us-east-1:{OWN}:project/project-name",
                "aws:SourceAccount": OWN,
            },
        ),
        ALLOW,
        "Sid CodeBuildAccess",
        repository=RP_CODEBUILD,
    ),
    case(
        "service-principal-other-project",
        req(
            "codebuild.amazonaws.com",
            context={
                "aws:SourceArn": f"arn:aws:codebuild:us-east-1:{OWN}:project/other",
                "aws:SourceAccount": OWN,
            },
        ),
        DENY,
        "no allow",
        repository=RP_CODEBUILD,
    ),
    # --- Action / NotAction / Resource / NotResource wildcards ----------------------------
    case(
        "action-wildcard-case-insensitive", req(alice, "ecr:BatchGetImage"), ALLOW, "identity", [BATCH_ONLY]
    ),
    case("action-question-mark", req(alice, "ecr:GetDownloadUrlForLayer"), ALLOW, "identity", [BATCH_ONLY]),
    case("action-wildcard-no-match", req(alice, "ecr:PutImage"), DENY, "no allow", [BATCH_ONLY]),
    case("notaction-allow-power-user", req(alice, "ecr:PutImage"), ALLOW, "identity", [POWER_USER]),
    case("notaction-allow-excludes-iam", req(alice, "iam:CreateUser", "*"), DENY, "no allow", [POWER_USER]),
    case(
        "resource-wildcard-region",
        req(alice, resource=repo(region="eu-west-1")),
        ALLOW,
        "identity",
        [PROJECT_A_ANY_REGION],
    ),
    case(
        "resource-wildcard-other-project",
        req(alice, resource=repo("project-b/api")),
        DENY,
        "no allow",
        [PROJECT_A_ANY_REGION],
    ),
    case(
        "resource-wildcard-other-account",
        req(alice, resource=repo(account=OTHER)),
        DENY,
        "no allow",
        [PROJECT_A_ANY_REGION],
    ),
    case(
        "resource-brackets-are-literal",
        req(alice, resource=repo("a[1]")),
        ALLOW,
        "identity",
        [LITERAL_BRACKETS],
    ),
    case(
        "resource-brackets-not-a-class", req(alice, resource=repo("a1")), DENY, "no allow", [LITERAL_BRACKETS]
    ),
    case(
        "notresource-deny-push-outside-dev",
        req(alice, "ecr:PutImage", repo("prod/app")),
        DENY,
        "explicit deny in identity policy #1 statement Sid PushOnlyToDev",
        [PUSH_ONLY_TO_DEV],
    ),
    case(
        "notresource-push-to-dev",
        req(alice, "ecr:PutImage", repo("dev/app")),
        ALLOW,
        "identity",
        [PUSH_ONLY_TO_DEV],
    ),
    case(
        "notresource-pull-from-prod",
        req(alice, "ecr:BatchGetImage", repo("prod/app")),
        ALLOW,
        "identity",
        [PUSH_ONLY_TO_DEV],
    ),
    # --- conditions: IP addresses ---------------------------------------------------------
    case(
        "ip-deny-outside-ranges",
        req(alice, context={"aws:SourceIp": "198.51.100.7", "aws:ViaAWSService": "false"}),
        DENY,
        "explicit deny",
        [ADMIN, DENY_OUTSIDE_IPS],
    ),
    case(
        "ip-inside-range",
        req(alice, context={"aws:SourceIp": "192.0.2.44", "aws:ViaAWSService": "false"}),
        ALLOW,
        "identity policy #1",
        [ADMIN, DENY_OUTSIDE_IPS],
    ),
    case(
        "ip-deny-needs-both-conditions",
        req(alice, context={"aws:SourceIp": "198.51.100.7"}),
        ALLOW,
        "identity policy #1",
        [ADMIN, DENY_OUTSIDE_IPS],
    ),
    case(
        "ip-allow-ipv6-cidr",
        req(alice, context={"aws:SourceIp": "2001:db8:1234:5678::1"}),
        ALLOW,
        "identity",
        [ALLOW_FROM_IPS],
    ),
    case(
        "ip-allow-ipv6-outside",
        req(alice, context={"aws:SourceIp": "2001:db8:ffff::1"}),
        DENY,
        "no allow",
        [ALLOW_FROM_IPS],
    ),
    case("ip-allow-missing-source-ip", req(alice), DENY, "no allow", [ALLOW_FROM_IPS]),
    # --- conditions: dates, numbers, booleans, binary -------------------------------------
    case("date-inside-window", req(alice, context=IN_RANGE), ALLOW, "identity", [DATE_WINDOW]),
    case(
        "date-after-window",
        req(alice, context={"aws:CurrentTime": "2020-07-01T00:00:00Z"}),
        DENY,
        "no allow",
        [DATE_WINDOW],
    ),
    case(
        "date-epoch-seconds-context",
        req(alice, context={"aws:CurrentTime": "1589544000"}),
        ALLOW,
        "identity",
        [DATE_WINDOW],
    ),
    case(
        "date-epoch-policy-value-edge",
        req(alice, context={"aws:EpochTime": "1593561599"}),
        ALLOW,
        "identity",
        [EPOCH_DEADLINE],
    ),
    case(
        "date-epoch-policy-value-late",
        req(alice, context={"aws:EpochTime": "1593561600"}),
        DENY,
        "no allow",
        [EPOCH_DEADLINE],
    ),
    case(
        "numeric-max-keys-ok",
        req(alice, "s3:ListBucket", "arn:aws:s3:::amzn-s3-demo-bucket", {"s3:max-keys": "10"}),
        ALLOW,
        "identity",
        [MAX_KEYS],
    ),
    case(
        "numeric-max-keys-too-many",
        req(alice, "s3:ListBucket", "arn:aws:s3:::amzn-s3-demo-bucket", {"s3:max-keys": "11"}),
        DENY,
        "no allow",
        [MAX_KEYS],
    ),
    case(
        "numeric-not-a-number",
        req(alice, "s3:ListBucket", "arn:aws:s3:::amzn-s3-demo-bucket", {"s3:max-keys": "ten"}),
        DENY,
        "no allow",
        [MAX_KEYS],
    ),
    case(
        "bool-deny-insecure-transport",
        req(alice, context={"aws:SecureTransport": "false"}),
        DENY,
        "Sid DenyInsecureTransport",
        [DENY_INSECURE],
    ),
    case(
        "bool-secure-transport",
        req(alice, context={"aws:SecureTransport": "true"}),
        ALLOW,
        "identity",
        [DENY_INSECURE],
    ),
    case(
        "binary-equals",
        req(alice, context={"example:key": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}),
        ALLOW,
        "identity",
        [BINARY],
    ),
    case("binary-differs", req(alice, context={"example:key": "b3RoZXI="}), DENY, "no allow", [BINARY]),
    # --- conditions: strings, IfExists, Null, negation on a missing key --------------------
    case(
        "string-ignore-case",
        req(alice, context={"aws:PrincipalTag/department": "engineering"}),
        ALLOW,
        "identity",
        [DEPARTMENT_IGNORE_CASE],
    ),
    case(
        "condition-key-case-insensitive",
        req(alice, context={"AWS:PRINCIPALTAG/DEPARTMENT": "ENGINEERING"}),
        ALLOW,
        "identity",
        [DEPARTMENT_IGNORE_CASE],
    ),
    case(
        "string-ignore-case-other-value",
        req(alice, context={"aws:PrincipalTag/department": "sales"}),
        DENY,
        "no allow",
        [DEPARTMENT_IGNORE_CASE],
    ),
    case("ifexists-key-absent", req(alice), ALLOW, "identity", [DEV_TAG_IF_EXISTS]),
    case(
        "ifexists-key-matches",
        req(alice, context={"ecr:ResourceTag/env": "dev"}),
        ALLOW,
        "identity",
        [DEV_TAG_IF_EXISTS],
    ),
    case(
        "ifexists-key-differs",
        req(alice, context={"ecr:ResourceTag/env": "prod"}),
        DENY,
        "no allow",
        [DEV_TAG_IF_EXISTS],
    ),
    case(
        "boolifexists-mfa-absent-denied",
        req(alice, "ecr:PutImage"),
        DENY,
        "Sid BlockMostAccessUnlessSignedInWithMFA",
        [MFA_REQUIRED],
    ),
    case(
        "boolifexists-mfa-present",
        req(alice, "ecr:PutImage", context={"aws:MultiFactorAuthPresent": "true"}),
        ALLOW,
        "Sid AllowEverything",
        [MFA_REQUIRED],
    ),
    case(
        "notaction-deny-spares-listed-actions",
        req(alice, "iam:ListMFADevices", "*"),
        ALLOW,
        "Sid AllowEverything",
        [MFA_REQUIRED],
    ),
    case("null-deny-untagged-resource", req(alice), DENY, "Sid DenyUntagged", [REQUIRE_TEAM_TAG]),
    case(
        "null-tagged-resource",
        req(alice, context={"aws:ResourceTag/team": "web"}),
        ALLOW,
        "identity",
        [REQUIRE_TEAM_TAG],
    ),
    case(
        "negated-operator-missing-key-is-true",
        req(other_dev),
        DENY,
        "Sid DenyOutsideOrg",
        [READ_ONLY],
        RP_ORG_PERIMETER,
    ),
    case(
        "negated-operator-key-matches",
        req(other_dev, context={"aws:PrincipalOrgID": "o-xxxx"}),
        ALLOW,
        "Sid AllowEveryone",
        [READ_ONLY],
        RP_ORG_PERIMETER,
    ),
    case(
        "negated-operator-other-org",
        req(other_dev, context={"aws:PrincipalOrgID": "o-yyyy"}),
        DENY,
        "Sid DenyOutsideOrg",
        [READ_ONLY],
        RP_ORG_PERIMETER,
    ),
    # --- conditions: multivalued keys -----------------------------------------------------
    case(
        "forallvalues-subset",
        req(alice, "ecr:CreateRepository", context={"aws:TagKeys": ["environment"]}),
        ALLOW,
        "identity",
        [TAG_KEYS_ALL],
    ),
    case(
        "forallvalues-extra-key",
        req(alice, "ecr:CreateRepository", context={"aws:TagKeys": ["environment", "owner"]}),
        DENY,
        "no allow",
        [TAG_KEYS_ALL],
    ),
    case(
        "forallvalues-missing-key-is-true",
        req(alice, "ecr:CreateRepository"),
        ALLOW,
        "identity",
        [TAG_KEYS_ALL],
    ),
    case(
        "forallvalues-with-null-false",
        req(alice, "ecr:CreateRepository"),
        DENY,
        "no allow",
        [TAG_KEYS_ALL_NOT_NULL],
    ),
    case(
        "forallvalues-with-null-false-tagged",
        req(alice, "ecr:CreateRepository", context={"aws:TagKeys": ["cost-center"]}),
        ALLOW,
        "identity",
        [TAG_KEYS_ALL_NOT_NULL],
    ),
    case(
        "foranyvalue-one-matches",
        req(alice, "ecr:CreateRepository", context={"aws:TagKeys": ["owner", "environment"]}),
        ALLOW,
        "identity",
        [TAG_KEYS_ANY],
    ),
    case(
        "foranyvalue-none-matches",
        req(alice, "ecr:CreateRepository", context={"aws:TagKeys": ["owner"]}),
        DENY,
        "no allow",
        [TAG_KEYS_ANY],
    ),
    case(
        "foranyvalue-missing-key-is-false",
        req(alice, "ecr:CreateRepository"),
        DENY,
        "no allow",
        [TAG_KEYS_ANY],
    ),
    case(
        "foranyvalue-stringlike-deny",
        req(alice, "ecr:TagResource", context={"aws:TagKeys": ["a", "key1-x"]}),
        DENY,
        "Sid DenyRestrictedTagKeys",
        [DENY_TAG_PREFIX],
    ),
    case(
        "foranyvalue-stringlike-no-hit",
        req(alice, "ecr:TagResource", context={"aws:TagKeys": ["a", "key2"]}),
        ALLOW,
        "identity",
        [DENY_TAG_PREFIX],
    ),
    # --- policy variables -----------------------------------------------------------------
    case(
        "variable-own-access-key",
        req(alice, "iam:CreateAccessKey", alice, {"aws:username": "alice"}),
        ALLOW,
        "identity",
        [OWN_ACCESS_KEYS],
    ),
    case(
        "variable-other-users-key",
        req(alice, "iam:CreateAccessKey", bob, {"aws:username": "alice"}),
        DENY,
        "no allow",
        [OWN_ACCESS_KEYS],
    ),
    case(
        "variable-without-value-no-match",
        req(alice, "iam:CreateAccessKey", alice),
        DENY,
        "no allow",
        [OWN_ACCESS_KEYS],
    ),
    case(
        "variable-principal-account-filled-in",
        req(alice, "ecr:PutImage", repo("alice/app"), {"aws:username": "alice"}),
        ALLOW,
        "identity",
        [OWN_REPOSITORIES],
    ),
    case(
        "variable-other-users-repository",
        req(alice, "ecr:PutImage", repo("bob/app"), {"aws:username": "alice"}),
        DENY,
        "no allow",
        [OWN_REPOSITORIES],
    ),
    case(
        "variable-literal-in-2008-version",
        req(alice, "ecr:PutImage", repo("alice/app"), {"aws:username": "alice"}),
        DENY,
        "no allow",
        [OWN_REPOSITORIES_2008],
    ),
    case(
        "variable-in-stringlike",
        req(
            alice,
            "s3:ListBucket",
            "arn:aws:s3:::amzn-s3-demo-bucket",
            {"aws:username": "alice", "s3:prefix": "home/alice/photos"},
        ),
        ALLOW,
        "identity",
        [HOME_FOLDER],
    ),
    case(
        "variable-in-stringlike-other-home",
        req(
            alice,
            "s3:ListBucket",
            "arn:aws:s3:::amzn-s3-demo-bucket",
            {"aws:username": "alice", "s3:prefix": "home/bob/photos"},
        ),
        DENY,
        "no allow",
        [HOME_FOLDER],
    ),
    case(
        "variable-value-is-not-a-wildcard",
        req(
            alice,
            "s3:ListBucket",
            "arn:aws:s3:::amzn-s3-demo-bucket",
            {"aws:username": "*", "s3:prefix": "home/bob/photos"},
        ),
        DENY,
        "no allow",
        [HOME_FOLDER],
    ),
]


@pytest.mark.parametrize(("request_", "identity", "repository", "registry", "allowed", "reason"), CASES)
def test_evaluate(
    request_: AuthzRequest,
    identity: Sequence[dict[str, Any]],
    repository: dict[str, Any] | None,
    registry: dict[str, Any] | None,
    allowed: bool,
    reason: str,
) -> None:
    decision = evaluate(
        request_,
        [parse_policy(json.dumps(p), "identity") for p in identity],
        resource_policy=parse_policy(json.dumps(repository), "repository") if repository else None,
        registry_policy=parse_policy(json.dumps(registry), "registry") if registry else None,
    )
    assert decision.allowed is allowed, decision.reason
    assert reason in decision.reason


# --- validation -------------------------------------------------------------------------------

S = {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}  # a valid identity statement
RS = {
    "Effect": "Allow",
    "Principal": {"AWS": OTHER},
    "Action": "ecr:BatchGetImage",
}  # valid repository statement


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in base.items() if k not in changes}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


INVALID = [
    pytest.param("identity", '{"Version": "2012-10-17", "Statement": [', "not valid JSON", id="bad-json"),
    pytest.param("identity", "[]", "must be a JSON object", id="not-an-object"),
    pytest.param(
        "identity",
        {"Version": "2012-10-17", "Statement": [S], "Foo": 1},
        "unknown element(s) 'Foo'",
        id="unknown-top-level",
    ),
    pytest.param(
        "identity", {"Version": "2020-01-01", "Statement": [S]}, "Version must be", id="bad-version"
    ),
    pytest.param("identity", {"Version": "2012-10-17"}, "no Statement", id="missing-statement"),
    pytest.param("identity", doc(), "non-empty list", id="empty-statement-list"),
    pytest.param("identity", doc(with_(S, Effect="Permit")), "Effect must be", id="bad-effect"),
    pytest.param(
        "identity",
        doc(with_(S, NotAction="ecr:PutImage")),
        "both Action and NotAction",
        id="action-and-notaction",
    ),
    pytest.param(
        "identity", doc({"Effect": "Allow", "Resource": "*"}), "needs Action or NotAction", id="no-action"
    ),
    pytest.param(
        "identity", doc(with_(S, Action="BatchGetImage")), "service:action", id="action-without-service"
    ),
    pytest.param("identity", doc(with_(S, Action=[])), "must not be empty", id="empty-action-list"),
    pytest.param(
        "identity",
        doc(with_(S, Resource=None)),
        "needs Resource or NotResource",
        id="identity-without-resource",
    ),
    pytest.param(
        "identity", doc(with_(S, Resource="my-repo")), 'must be "*" or an ARN', id="resource-not-arn"
    ),
    pytest.param(
        "identity",
        doc(with_(S, Principal="*")),
        "not allowed in an identity-based policy",
        id="principal-in-identity-policy",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Actions="ecr:*")),
        "unknown element(s) 'Actions'",
        id="unknown-statement-element",
    ),
    pytest.param("identity", doc(with_(S, Sid="A"), with_(S, Sid="A")), "'A' repeated", id="duplicate-sid"),
    pytest.param(
        "identity",
        '{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}',
        "repeats the key 'Version'",
        id="duplicate-json-key",
    ),
    pytest.param(
        "repository",
        doc({"Effect": "Allow", "Action": "ecr:*"}),
        "needs a Principal or NotPrincipal",
        id="repository-without-principal",
    ),
    pytest.param("registry", doc(RS), "needs Resource or NotResource", id="registry-without-resource"),
    pytest.param(
        "repository",
        doc(with_(RS, Principal={"AWS": "12345"})),
        "invalid Principal '12345'",
        id="principal-short-account",
    ),
    pytest.param(
        "repository",
        doc(with_(RS, Principal={"AWS": f"arn:aws:iam::{OWN}:user/*"})),
        "wildcards are not allowed",
        id="principal-wildcard-arn",
    ),
    pytest.param(
        "repository",
        doc(with_(RS, Principal=user("alice"))),
        'must be "*" or an object',
        id="principal-bare-arn-string",
    ),
    pytest.param(
        "repository",
        doc(with_(RS, Principal={"CanonicalUser": "abc"})),
        "unsupported Principal type",
        id="principal-unsupported-type",
    ),
    pytest.param(
        "repository",
        doc(with_(RS, Principal=None, NotPrincipal={"AWS": OTHER})),
        "NotPrincipal can only be used with",
        id="notprincipal-with-allow",
    ),
    pytest.param(
        "repository",
        doc(with_(RS, NotPrincipal={"AWS": OTHER})),
        "both Principal and NotPrincipal",
        id="principal-and-notprincipal",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"StringEqualz": {"aws:username": "a"}})),
        "unknown Condition operator 'StringEqualz'",
        id="unknown-operator",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}})),
        "invalid value '10.0.0.0/33'",
        id="bad-cidr",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"NumericLessThan": {"s3:max-keys": "ten"}})),
        "invalid value 'ten'",
        id="bad-number",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"DateLessThan": {"aws:CurrentTime": "tomorrow"}})),
        "invalid value 'tomorrow'",
        id="bad-date",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"Bool": {"aws:SecureTransport": "yes"}})),
        "invalid value 'yes'",
        id="bad-bool",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"BinaryEquals": {"example:key": "not base64!"}})),
        "invalid value",
        id="bad-base64",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"Null": {"aws:TagKeys": "maybe"}})),
        "must be true or false",
        id="bad-null-value",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"ForAllValues:Null": {"aws:TagKeys": "true"}})),
        "Null takes no prefix",
        id="set-operator-on-null",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"StringEquals": {"username": "a"}})),
        "invalid condition key 'username'",
        id="condition-key-without-prefix",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"StringEquals": {"aws:username": []}})),
        "no values",
        id="condition-without-values",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"StringEquals": {"aws:username": {"a": 1}}})),
        "must be strings, numbers or booleans",
        id="condition-object-value",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Resource="arn:aws:ecr:*:*:repository/${aws:username")),
        None,
        id="unterminated-variable-is-literal",
    ),
    pytest.param(
        "identity",
        doc(with_(S, Resource="arn:aws:ecr:*:*:repository/${user name}")),
        "invalid policy variable",
        id="bad-variable",
    ),
]


@pytest.mark.parametrize(("kind", "document", "message"), INVALID)
def test_parse_errors(kind: Any, document: Any, message: str | None) -> None:
    if message is None:  # documented as accepted
        parse_policy(document, kind)
        return
    with pytest.raises(PolicyError) as info:
        parse_policy(document, kind)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


VALID = [
    pytest.param("repository", doc(with_(RS, Principal="*")), id="principal-star"),
    pytest.param(
        "repository",
        doc(with_(RS, Principal={"AWS": [OTHER, f"arn:aws:iam::{THIRD}:root"]})),
        id="principal-account-list",
    ),
    pytest.param(
        "repository", doc(with_(RS, Principal={"Service": ["ecr.amazonaws.com"]})), id="principal-service"
    ),
    pytest.param("repository", {"Statement": with_(RS, Sid="NoVersion")}, id="statement-object-no-version"),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"forAnyValue:stringLikeIfExists": {"aws:TagKeys": "a*"}})),
        id="operator-names-case-insensitive",
    ),
    pytest.param(
        "identity", doc(with_(S, Condition={"NumericEquals": {"s3:max-keys": 10}})), id="numeric-json-number"
    ),
    pytest.param(
        "identity", doc(with_(S, Condition={"Bool": {"aws:SecureTransport": True}})), id="bool-json-boolean"
    ),
    pytest.param(
        "identity",
        doc(with_(S, Condition={"DateLessThan": {"aws:CurrentTime": "2019-07-16"}})),
        id="date-only",
    ),
]


@pytest.mark.parametrize(("kind", "document"), VALID)
def test_parse_valid(kind: Any, document: Any) -> None:
    policy = parse_policy(document, kind)
    assert policy.kind == kind
    assert policy.statements


# --- properties the callers rely on -----------------------------------------------------------


def test_policies_are_hashable_and_equal_by_content() -> None:
    text = json.dumps(RP_USERS)
    a = parse_policy(text, "repository")
    b = parse_policy(json.dumps(RP_USERS, indent=2), "repository")
    c = parse_policy(RP_USERS, "repository")
    assert a == b == c and hash(a) == hash(b) == hash(c)
    assert len({a, b, c}) == 1
    assert a != parse_policy(text.replace("push-pull-user-2", "someone"), "repository")
    cache: dict[Policy, str] = {a: "cached"}
    assert cache[b] == "cached"


def test_evaluate_rejects_a_policy_of_the_wrong_kind() -> None:
    repository_policy = parse_policy(RP_USERS, "repository")
    with pytest.raises(ValueError, match="expected a identity policy"):
        evaluate(req(alice), [repository_policy])
    with pytest.raises(ValueError, match="expected a registry policy"):
        evaluate(req(alice), [], registry_policy=repository_policy)


def test_parse_policy_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="policy kind"):
        parse_policy(ADMIN, "bucket")  # type: ignore[arg-type]


def test_principal_context_keys_are_filled_from_the_request() -> None:
    policy = parse_policy(
        doc(
            with_(
                S,
                Condition={
                    "StringEquals": {"aws:PrincipalAccount": OWN, "aws:ResourceAccount": OWN},
                    "ArnEquals": {"aws:PrincipalArn": alice},
                },
            )
        ),
        "identity",
    )
    assert evaluate(req(alice), [policy]).allowed
    assert not evaluate(req(bob), [policy]).allowed
    explicit = req(alice, context={"aws:PrincipalArn": bob})  # the caller's value wins
    assert not evaluate(explicit, [policy]).allowed


def test_variable_default_and_escapes() -> None:
    policy = parse_policy(
        doc(with_(S, Resource=f"arn:aws:ecr:*:{OWN}:repository/${{aws:username, 'shared'}}/${{*}}")),
        "identity",
    )
    assert evaluate(req(alice, resource=repo("shared/*")), [policy]).allowed
    assert not evaluate(req(alice, resource=repo("shared/app")), [policy]).allowed  # ${*} is a literal *
    assert evaluate(req(alice, resource=repo("alice/*"), context={"aws:username": "alice"}), [policy]).allowed


def test_arn_wildcards_stay_within_a_component() -> None:
    policy = parse_policy(
        doc(with_(S, Condition={"ArnLike": {"aws:SourceArn": "arn:aws:codebuild:*:123456789012:project/*"}})),
        "identity",
    )
    ok = {"aws:SourceArn": "arn:aws:codebuild:us-east-1:123456789012:project/p"}
    spanning = {"aws:SourceArn": "arn:aws:codebuild:us-east-1:999999999999:x:123456789012:project/p"}
    assert evaluate(req(alice, context=ok), [policy]).allowed
    assert not evaluate(req(alice, context=spanning), [policy]).allowed


def test_case_table_is_large_enough() -> None:
    assert len(CASES) >= 40
