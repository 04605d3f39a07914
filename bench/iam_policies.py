"""Policy-evaluation speed with groups and attached policies, uncached (issue 10).

    python bench/iam_policies.py [--policies 10] [--statements 100] [--seconds 3]

A real SQLite metadata store in a temporary directory; three principals whose identity policies
hold the same statements: A inline on the user (the baseline), B as customer managed policies
attached to the user, C as customer managed policies attached to a group the user is in. Each
decision goes through PolicyAuthorizer.authorize with its decision cache emptied before every call
(the parsed-policy cache stays warm, as it does on the request path), and through the pure
evaluate(). Each statement names other actions or repositories, so every one is checked and the
request is allowed only by the last statement of the last policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from berth.db.migrate import upgrade  # noqa: E402
from berth.db.sqlite import SqliteBackend  # noqa: E402
from berth.iam.authorizer import PolicyAuthorizer  # noqa: E402
from berth.iam.authz import Context  # noqa: E402
from berth.iam.policy import AuthzRequest, evaluate  # noqa: E402
from berth.iam.service import IdentityService  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"


def documents(policies: int, statements: int) -> list[str]:
    out = []
    for p in range(policies):
        sts = [{"Effect": "Allow", "Action": [f"ecr:Describe{p}x{s}", "ecr:ListImages"],
                "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team-{p}-{s}/*"} for s in range(statements)]
        if p == policies - 1:
            sts[-1] = {"Effect": "Allow", "Action": "ecr:BatchGetImage",
                       "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/app/*",
                       "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}}
        out.append(json.dumps({"Version": "2012-10-17", "Statement": sts}))
    return out


def rate(fn: object, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()  # type: ignore[operator]
        n += 50
    return n / elapsed


async def arate(fn: object, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            await fn()  # type: ignore[operator]
        n += 50
    return n / elapsed


async def main(policies: int, statements: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "berth.db"
        upgrade(f"sqlite:///{path}")
        db = SqliteBackend(path)
        identity = IdentityService(db)
        await identity.ensure_signing_key()
        await identity.ensure_account(ACCOUNT)
        docs = documents(policies, statements)
        e = identity.entities
        await identity.create_user(ACCOUNT, "inline")
        for i, d in enumerate(docs):
            await identity.put_user_policy(ACCOUNT, "inline", f"p{i}", d)
        await identity.create_user(ACCOUNT, "attached")
        await identity.create_user(ACCOUNT, "member")
        await e.create_group(ACCOUNT, "team")
        await e.add_user_to_group(ACCOUNT, "team", "member")
        for i, d in enumerate(docs):
            arn = (await e.create_policy(ACCOUNT, f"p{i}", d)).arn
            await e.attach(ACCOUNT, "user", "attached", arn)
            await e.attach(ACCOUNT, "group", "team", arn)
        authz = PolicyAuthorizer(db, identity)
        resource = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/app/web"
        ctx = Context("127.0.0.1")
        print(f"{policies} policies x {statements} statements; decisions per second, uncached")
        for name in ("inline", "attached", "member"):
            principal = (await identity.key_principal((await identity.create_access_key(ACCOUNT, name)).id))
            assert principal is not None
            who = principal[0]

            async def decide() -> None:
                authz._decisions.clear()
                assert (await authz.authorize(who, "ecr:BatchGetImage", resource, ctx)).allowed  # noqa: B023

            await decide()
            policies_ = await identity.identity_policies(who)
            request = AuthzRequest(who.arn, ACCOUNT, "ecr:BatchGetImage", resource, ACCOUNT,
                                   {"aws:PrincipalAccount": ACCOUNT})
            pure = rate(lambda: evaluate(request, policies_), seconds)  # noqa: B023
            print(f"  {name:9} authorizer {await arate(decide, seconds):9.0f}/s   evaluate() {pure:9.0f}/s")
        await db.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", type=int, default=10)
    ap.add_argument("--statements", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    asyncio.run(main(a.policies, a.statements, a.seconds))
