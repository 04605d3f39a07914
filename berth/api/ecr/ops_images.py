"""ECR operations: (to be filled)."""

from __future__ import annotations

from berth.api.ecr.app import Handler

OPERATIONS: dict[str, Handler] = {}
