"""Every lifecycle refusal has its ECR exception, and that exception is in the ECR model."""

from __future__ import annotations

from berth.api.ecr import errors
from berth.api.ecr.operations import OPERATIONS as ALL
from berth.api.ecr.ops_lifecycle import ERRORS, OPERATIONS
from berth.lifecycle import service


def test_every_refusal_maps_to_a_model_exception() -> None:
    codes = {cls.code for cls in vars(service).values()
             if isinstance(cls, type) and issubclass(cls, service.LifecycleError) and cls is not service.LifecycleError}
    assert codes == set(ERRORS)
    assert set(ERRORS.values()) <= set(errors.MODEL_EXCEPTIONS)


def test_the_operations_are_registered() -> None:
    assert set(OPERATIONS) == {"PutLifecyclePolicy", "GetLifecyclePolicy", "DeleteLifecyclePolicy",
                               "StartLifecyclePolicyPreview", "GetLifecyclePolicyPreview", "UpdateImageStorageClass",
                               "RegisterPullTimeUpdateExclusion", "DeregisterPullTimeUpdateExclusion",
                               "ListPullTimeUpdateExclusions"}
    assert all(ALL[op] is OPERATIONS[op] for op in OPERATIONS)
