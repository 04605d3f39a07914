"""Cross-account replication is decided by the destination, as in ECR: its registry policy must allow the
source account `ecr:ReplicateImage` on the repository (and `ecr:CreateRepository` when replication would
create it). The source account consented by configuring the rule; that consent stands in for its identity
policy, so the one IAM evaluation (berth.iam.policy.evaluate) applies its cross-account rule unchanged.
"""

from __future__ import annotations

from berth.db import policies as qp
from berth.db.store import Backend
from berth.iam.authz import principal_arn, repository_arn
from berth.iam.policy import AuthzRequest, Decision, evaluate, parse_policy

REPLICATE = "ecr:ReplicateImage"
CREATE = "ecr:CreateRepository"
_CONSENT = parse_policy({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": [REPLICATE, CREATE], "Resource": "*"}]}, "identity")


async def replication_allowed(db: Backend, source_account: str, dest_account: str, dest_region: str,
                              repository: str, action: str) -> Decision:
    if source_account == dest_account:
        return Decision(True, "same account")
    text = await db.read(qp.get_registry_policy, dest_account, dest_region)
    if not text:
        return Decision(False, f"the registry {dest_account} in {dest_region} has no registry policy")
    request = AuthzRequest(principal_arn(source_account), source_account, action,
                           repository_arn(dest_region, dest_account, repository), dest_account, {})
    return evaluate(request, (_CONSENT,), None, parse_policy(text, "registry"))
