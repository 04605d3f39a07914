"""Every ECR operation Berth handles: one table, one module per family. Add a family here."""

from __future__ import annotations

from berth.api.ecr import (
    ops_images,
    ops_layers,
    ops_lifecycle,
    ops_pullthrough,
    ops_registry,
    ops_replication,
    ops_repositories,
    ops_scanning,
    ops_templates,
)
from berth.api.ecr.app import Handler

OPERATIONS: dict[str, Handler] = {
    **ops_registry.OPERATIONS,
    **ops_repositories.OPERATIONS,
    **ops_images.OPERATIONS,
    **ops_layers.OPERATIONS,
    **ops_lifecycle.OPERATIONS,
    **ops_replication.OPERATIONS,
    **ops_templates.OPERATIONS,
    **ops_pullthrough.OPERATIONS,
    **ops_scanning.OPERATIONS,
}
