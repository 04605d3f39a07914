"""Repositories created by replication at a destination of this deployment.

ECR gives them the destination's repository creation template for REPLICATION (longest prefix first)
and otherwise default settings. This is the one place replication creates a repository: the creation
templates (berth/registry/templates.py, built beside this) plug in here.
"""

from __future__ import annotations

from berth.registry.model import Repository
from berth.registry.service import RegistryService


async def create_repository_for_replication(registry: RegistryService, account: str, region: str,
                                            name: str) -> Repository:
    """The destination repository, created with default settings when missing (templates: not yet applied)."""
    repo, _ = await registry.create_repository(account, region, name)
    return repo
