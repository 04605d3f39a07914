"""Resource policies (repository, registry) and account settings: validated, then stored."""

from __future__ import annotations

from berth.db import policies as q
from berth.db.store import Backend
from berth.iam.policy import PolicyKind, parse_policy

# name -> (default, allowed values)
SETTINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "BASIC_SCAN_TYPE_VERSION": ("AWS_NATIVE", ("AWS_NATIVE", "CLAIR")),
    "REGISTRY_POLICY_SCOPE": ("V2", ("V1", "V2")),
    "BLOB_MOUNTING": ("ENABLED", ("ENABLED", "DISABLED")),
}


class ResourcePolicies:
    def __init__(self, db: Backend) -> None:
        self.db = db

    @staticmethod
    def check(text: str, kind: PolicyKind) -> None:
        """Raises policy.PolicyError (a ValueError) with the reason when the document is invalid."""
        parse_policy(text, kind)

    async def set_repository_policy(self, repo_id: int, text: str) -> None:
        self.check(text, "repository")
        await self.db.write(q.set_repository_policy, repo_id, text)

    async def repository_policy(self, repo_id: int) -> str | None:
        return await self.db.read(q.get_repository_policy, repo_id)

    async def delete_repository_policy(self, repo_id: int) -> str | None:
        return await self.db.write(q.delete_repository_policy, repo_id)

    async def put_registry_policy(self, account: str, region: str, text: str) -> None:
        self.check(text, "registry")
        await self.db.write(q.put_registry_policy, account, region, text)

    async def registry_policy(self, account: str, region: str) -> str | None:
        return await self.db.read(q.get_registry_policy, account, region)

    async def delete_registry_policy(self, account: str, region: str) -> str | None:
        return await self.db.write(q.delete_registry_policy, account, region)

    async def setting(self, account: str, region: str, name: str) -> str:
        if name not in SETTINGS:
            raise ValueError(f"unknown account setting {name!r}; expected one of {', '.join(SETTINGS)}")
        return await self.db.read(q.get_setting, account, region, name) or SETTINGS[name][0]

    async def put_setting(self, account: str, region: str, name: str, value: str) -> None:
        if name not in SETTINGS:
            raise ValueError(f"unknown account setting {name!r}; expected one of {', '.join(SETTINGS)}")
        if value not in SETTINGS[name][1]:
            raise ValueError(f"invalid value {value!r} for {name}; expected one of {', '.join(SETTINGS[name][1])}")
        await self.db.write(q.put_setting, account, region, name, value)
