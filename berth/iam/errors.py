"""Identity domain errors; the IAM edge renders them in IAM's XML, the ECR edge as AWS JSON."""

from __future__ import annotations


class IamError(Exception):
    code = "ServiceFailure"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error(code: str, status: int = 400) -> type[IamError]:
    return type(code, (IamError,), {"code": code, "status": status})


NoSuchEntity = _error("NoSuchEntity", 404)
EntityAlreadyExists = _error("EntityAlreadyExists", 409)
DeleteConflict = _error("DeleteConflict", 409)
MalformedPolicyDocument = _error("MalformedPolicyDocument")
LimitExceeded = _error("LimitExceeded", 409)
InvalidInput = _error("InvalidInput")
PolicyNotAttachable = _error("PolicyNotAttachable")
AccessDenied = _error("AccessDenied", 403)
ValidationError = _error("ValidationError")
InvalidIdentityToken = _error("InvalidIdentityToken")
ExpiredWebIdentityToken = _error("ExpiredTokenException")
IdpCommunicationError = _error("IDPCommunicationError")
