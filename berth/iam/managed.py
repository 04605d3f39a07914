"""The AWS managed policies for ECR, with their real ARNs, versions and documents (AWS's managed-policy
reference, docs.aws.amazon.com/aws-managed-policy/latest/reference/, checked against the MAMIP archive
of AWS managed policies); read-only, in every account. All but the pull-through cache's service-role
policy are attachable to users, groups and roles; that one belongs to a service-linked role only."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from berth.db.iam_entities import AWS_MANAGED_PREFIX as AWS_POLICY_PREFIX  # defined once, beside the store

_READ = ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
         "ecr:GetRepositoryPolicy", "ecr:DescribeRepositories", "ecr:ListImages", "ecr:DescribeImages",
         "ecr:BatchGetImage", "ecr:GetLifecyclePolicy", "ecr:GetLifecyclePolicyPreview", "ecr:ListTagsForResource",
         "ecr:DescribeImageScanFindings"]
_PUSH = ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"]


def _doc(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=2)


@dataclass(frozen=True)
class AwsManagedPolicy:
    name: str
    policy_id: str
    version: str
    description: str
    document: str
    created: float  # epoch seconds, as AWS lists them
    updated: float
    path: str = "/"
    attachable: bool = True  # False: a service-role policy (AttachXPolicy answers PolicyNotAttachable)

    @property
    def id(self) -> str:
        """Berth's own stable id for it (AWS's ids are not published for every policy)."""
        return self.policy_id or "ANPA" + hashlib.sha256(self.name.encode()).hexdigest()[:17].upper()

    @property
    def arn(self) -> str:
        return f"{AWS_POLICY_PREFIX}{self.path[1:]}{self.name}"


AWS_MANAGED: dict[str, AwsManagedPolicy] = {p.arn: p for p in (
    AwsManagedPolicy("AmazonEC2ContainerRegistryReadOnly", "", "v3",
                     "Provides read-only access to Amazon EC2 Container Registry repositories.",
                     _doc({"Effect": "Allow", "Action": _READ, "Resource": "*"}), 1450717440.0, 1576011360.0),
    AwsManagedPolicy("AmazonEC2ContainerRegistryPowerUser", "", "v3",
                     "Provides full access to Amazon EC2 Container Registry repositories, but does not allow "
                     "repository deletion or policy changes.",
                     _doc({"Effect": "Allow", "Action": _READ + _PUSH, "Resource": "*"}), 1450717500.0,
                     1576010880.0),
    AwsManagedPolicy("AmazonEC2ContainerRegistryFullAccess", "", "v3",
                     "Provides administrative access to Amazon ECR resources",
                     _doc({"Effect": "Allow", "Action": ["ecr:*", "cloudtrail:LookupEvents"], "Resource": "*"},
                          {"Effect": "Allow", "Action": ["iam:CreateServiceLinkedRole"], "Resource": "*",
                           "Condition": {"StringEquals": {"iam:AWSServiceName": [
                               "replication.ecr.amazonaws.com"]}}}), 1450717500.0, 1607126659.0),
    AwsManagedPolicy("AmazonEC2ContainerRegistryPullOnly", "", "v1",
                     "Provides access to pull images from Amazon EC2 Container Registry repositories.",
                     _doc({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                                         "ecr:GetDownloadUrlForLayer",
                                                         "ecr:BatchImportUpstreamImage"], "Resource": "*"}),
                     1728061129.0, 1728061129.0),
    AwsManagedPolicy("AWSECRPullThroughCache_ServiceRolePolicy", "", "v4",
                     "Enables access to AWS services and resources used or managed by AWS ECR pull through cache",
                     _doc({"Sid": "ECR", "Effect": "Allow",
                           "Action": ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability",
                                      "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                                      "ecr:PutImage", "ecr:BatchGetImage", "ecr:BatchImportUpstreamImage",
                                      "ecr:GetDownloadUrlForLayer", "ecr:GetImageCopyStatus"],
                           "Resource": "*",
                           "Condition": {"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}}},
                          {"Sid": "SecretsManager", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                           "Resource": "arn:aws:secretsmanager:*:*:secret:ecr-pullthroughcache/*",
                           "Condition": {"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}}}),
                     1637963460.0, 1778609520.0, path="/aws-service-role/", attachable=False),
)}
