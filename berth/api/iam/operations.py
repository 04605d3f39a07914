"""Every IAM and STS operation the query face serves."""

from __future__ import annotations

from berth.api.iam import app, ops_entities

OPERATIONS: dict[tuple[str, str], app.Operation] = {**app.OPERATIONS, **ops_entities.OPERATIONS}
