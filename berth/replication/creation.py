"""Repositories created by replication at a destination of this deployment.

ECR gives them the destination's repository creation template for REPLICATION (longest prefix first)
and otherwise default settings. This is the one place replication creates a repository.
"""

from __future__ import annotations

from berth.registry.model import Repository
from berth.registry.service import RegistryService


async def create_repository_for_replication(registry: RegistryService, account: str, region: str,
                                            name: str) -> Repository:
    """The destination repository, created when missing: with the destination's REPLICATION template
    when one matches, else default settings. (The destination's registry policy allowed
    ecr:CreateRepository before this is called: berth/replication/access.py.)"""
    if registry.templates is None:
        repo, _ = await registry.create_repository(account, region, name)
        return repo
    repo, _ = await registry.templates.create_repository_from_template(account, region, name, "REPLICATION",
                                                                       fallback_defaults=True)
    return repo
