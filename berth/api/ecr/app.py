"""POST / with X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>: the ECR JSON 1.1 face.

Authenticate (SigV4), validate against botocore's model, authorize through the one seam, call
the operation's handler, and translate domain errors into AWS exception shapes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from berth.api.auth import Authenticator, UnknownAccessKey
from berth.api.ecr import errors, model
from berth.api.ecr.errors import EcrError
from berth.api.limits import Limits, message, retry_after
from berth.audit import AuditNote, AuditTrail, json_error, user_agent
from berth.iam import sigv4
from berth.iam.authz import Authorizer, Context, Principal, repository_arn, request_tag_context
from berth.iam.errors import IamError
from berth.iam.resources import ResourcePolicies
from berth.iam.service import IdentityService
from berth.lifecycle.service import LifecycleService
from berth.registry.errors import FailureLog, RegistryError, from_failure
from berth.registry.images import Images
from berth.registry.repositories import RepositoryAdmin
from berth.registry.service import RegistryService
from berth.registry.templates import Templates
from berth.replication.pullthrough_rules import PullThroughRules
from berth.replication.service import ReplicationService

log = logging.getLogger("berth.ecr")
MAX_BODY = 32 * 1024 * 1024  # UploadLayerPart carries up to 20 MiB, base64-encoded


@dataclass
class Services:
    registry: RegistryService
    identity: IdentityService
    policies: ResourcePolicies
    authorizer: Authorizer
    domain: str
    images: Images
    repositories: RepositoryAdmin
    lifecycle: LifecycleService | None = None  # berth/lifecycle (ops_lifecycle.py)
    replication: ReplicationService | None = None
    templates: Templates | None = None  # creation templates (ops_templates.py)
    pull_through: PullThroughRules | None = None  # pull-through cache rules (ops_pullthrough.py)
    scanning: Any = None  # berth.scanning.service.ScanService
    signing: Any = None  # berth.scanning.signing.SigningService
    default_account: str = "123456789012"  # what a plain registry host (no <id>.dkr.ecr.… name) selects
    default_region: str = "us-east-1"


@dataclass
class EcrCall:
    op: str
    params: dict[str, Any]
    principal: Principal
    region: str  # the region the request was signed for
    host: str
    context: Context
    services: Services
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    note: dict[str, Any] | None = None  # the access log's (berth/observe), when it runs

    @property
    def registry_id(self) -> str:
        return str(self.params.get("registryId") or self.principal.account)

    def repo_arn(self, name: str, account: str | None = None) -> str:
        return repository_arn(self.region, account or self.registry_id, name)

    async def allow(self, action: str, resource: str) -> None:
        decision = await self.services.authorizer.authorize(self.principal, action, resource, self.context)
        if not decision.allowed:
            if self.note is not None:
                self.note["denied"] = action
            raise EcrError("AccessDeniedException",
                           f"User: {self.principal.arn} is not authorized to perform: {action} on resource: "
                           f"{resource} because {decision.reason}")


Handler = Callable[[EcrCall], Awaitable[dict[str, Any]]]


def default_resource(call: EcrCall) -> str:
    """The resource an operation acts on, as AWS authorizes it."""
    if isinstance(call.params.get("resourceArn"), str):  # TagResource, UntagResource, ListTagsForResource
        return str(call.params["resourceArn"])
    name = call.params.get("repositoryName")
    if isinstance(name, str):
        return call.repo_arn(name)
    if call.op in ("GetAuthorizationToken",):
        return "*"
    if call.op == "DescribeRepositories" or call.op == "CreateRepository":
        return call.repo_arn("*")
    return f"arn:aws:ecr:{call.region}:{call.registry_id}:*"


def default_resources(call: EcrCall) -> list[str]:
    """Every resource the operation must be allowed on: each named repository of DescribeRepositories and
    BatchGetRepositoryScanningConfiguration (so their repository policies grant and deny, as in AWS), else the
    one default resource."""
    names = call.params.get("repositoryNames")
    if call.op in ("DescribeRepositories", "BatchGetRepositoryScanningConfiguration") and isinstance(names, list) \
            and names:
        return [call.repo_arn(str(n)) for n in dict.fromkeys(names)]
    return [default_resource(call)]


class EcrApi:
    def __init__(self, services: Services, authenticator: Authenticator,
                 operations: dict[str, Handler], default_region: str, audit: AuditTrail | None = None,
                 limits: Limits | None = None) -> None:
        self.limits = limits
        self.services = services
        self.authn = authenticator
        self.operations = operations
        self.default_region = default_region
        self._failures = FailureLog(log)
        self.audit = audit

    async def handle(self, method: str, raw_path: str, query: str, headers: Any, body: bytes, target: str,
                     client_ip: str, secure: bool, host: str,
                     log_note: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
        """`log_note` is the access log's (berth/observe), when it runs; the audit note is the trail's."""
        note = AuditNote("ecr.amazonaws.com", client_ip, user_agent(headers), region=self.default_region)
        out = await self._handle(method, raw_path, query, headers, body, target, client_ip, secure, host, note,
                                 log_note)
        if note.retry_after:
            out[1]["Retry-After"] = retry_after(note.retry_after)
        if self.audit is not None:
            if out[0] != 200:
                note.error_code, note.error_message = json_error(out[2])
            await self.audit.record(note)
        return out

    async def _handle(self, method: str, raw_path: str, query: str, headers: Any, body: bytes, target: str,
                      client_ip: str, secure: bool, host: str, note: AuditNote,
                      log_note: dict[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
        request_id = note.request_id
        try:
            op = model.target_to_operation(target)
            note.event_name = op or target.rsplit(".", 1)[-1][:128]
            if op is None:
                raise EcrError("UnknownOperationException", f"Unknown operation {target}")
            try:
                principal, signed = await self.authn.aws_principal(method, raw_path, query, headers, body,
                                                                    service="ecr")
            except UnknownAccessKey as e:
                raise EcrError("UnrecognizedClientException", e.message) from None
            if log_note is not None:
                log_note.update(principal=principal.arn, account=principal.account, operation=op, face="ecr")
            note.caller(principal)
            if self.limits is not None and (wait := self.limits.check(principal)):
                note.retry_after = wait
                raise EcrError("ThrottlingException", message(wait))
            handler = self.operations.get(op)
            if handler is None:  # said before any validation: whatever the parameters, it cannot work
                raise EcrError("ValidationException", f"Berth does not support the ECR operation {op} yet.")
            params = model.decode_body(body)
            model.validate_input(op, params)
            region = signed.region if signed is not None else self.default_region
            note.region, note.request_parameters = region, params
            context = Context(client_ip, secure, request_tag_context(params))
            call = EcrCall(op, params, principal, region, host, context, self.services,
                           request_id, log_note)
            for resource in default_resources(call):
                await call.allow(f"ecr:{op}", resource)
            result = await handler(call)
            note.response_elements = result
            out = json.dumps(result, separators=(",", ":"), default=str).encode()
            return 200, {"Content-Type": errors.CONTENT_TYPE, "x-amzn-RequestId": request_id}, out
        except (sigv4.SigV4Error, model.RequestError) as e:
            return errors.from_exception(e, request_id=request_id)
        except EcrError as e:
            return errors.error_body(e.name, e.message, request_id=request_id, **e.extra)
        except RegistryError as e:
            return errors.error_body(errors.REGISTRY_ERRORS[e.code], e.message, request_id=request_id)
        except IamError as e:
            return errors.error_body(errors.IAM_ERRORS[e.code], e.message, request_id=request_id)
        except Exception as exc:  # never a bare 500: ServerException is the model's own fault shape
            failure = from_failure(exc)
            if failure is not None:
                self._failures.note(failure, exc, f"ECR {target} (request id {request_id})")
                return errors.error_body(errors.REGISTRY_ERRORS[failure.code], failure.message,
                                         request_id=request_id)
            log.exception("ECR %s failed; request id %s", target, request_id)
            return errors.fault(request_id)
