"""The authorization matrix: every OCI endpoint and every ECR operation × every kind of caller.

One `berth serve --auth iam` (SQLite) per module, two accounts: A = 123456789012 owns everything
the matrix touches; B = 111122223333 (made with `berth admin create-account`) is the other
account. A's users are made through the server's IAM API. Each cell stages its own content in a
fresh repository of A (as A's administrator), makes exactly one request as its caller, and checks
the exact answer:

- OCI: 401 UNAUTHORIZED with a WWW-Authenticate challenge for a missing, garbage, expired or
  altered token; 403 DENIED when a policy denies; the endpoint's 2xx, on real content, when allowed.
- ECR: MissingAuthenticationTokenException, InvalidSignatureException, UnrecognizedClientException,
  AccessDeniedException, or success.
A refused write is also checked to have changed nothing (the manifest is still there, the upload
still empty, the policy the same, ...).

Callers (repository-scoped targets; registry-wide operations differ as said below):
- other-account: B's administrator on A's repository (OCI: A's registry host; ECR: registryId=A),
  with no policy granting B: denied.
- other-account-granted: the same, with A's repository policy granting arn:aws:iam::B:root "ecr:*"
  (the catalog and CreateRepository act on the registry, not a repository: A's registry policy
  grants it there). B's administrator's identity policy allows everything, so it is allowed.
- deny:<action>: a user of A allowed "ecr:*" by its identity policy, with an explicit Deny of
  exactly that action: one cell per action the target is documented to need (ECR-REFERENCE.md
  §5.3 for /v2; ecr:<Operation>, plus ecr:BatchGetImage for ListImageReferrers as its model says),
  so the cells also check the request -> action mapping.
- denied-by-resource-policy: a user of A allowed "ecr:*", denied by A's repository policy (registry
  policy for registry-scoped targets).
- least-privilege: a user of A allowed exactly the documented actions, and only on the matrix's
  repositories (repository/m/*; repository/* for registry-scoped targets): allowed. This catches a
  target that needs an undocumented action or authorizes the wrong resource.
- group-member: a user of A whose own policy grants nothing, in a group with a customer managed
  "ecr:*" policy attached: allowed.
- role-session / web-identity-session: temporary credentials from AssumeRole (trust: A) and from
  AssumeRoleWithWebIdentity (a loopback OIDC issuer) of roles with that policy attached, and the
  registry tokens they obtain: allowed.
- expired-session: temporary credentials that ended (ExpiredTokenException on ECR) and a registry
  token of a role session past its end (401 on /v2).
- admin: A's administrator: allowed.
Registry-wide operations (GetAuthorizationToken, DescribeRegistry, registry policy, account
settings) act on the caller's own registry: for them the other-account cells are B acting on B's
registry, and are allowed (the answer names B's registry).

ECR operations come from every `berth.api.ecr.ops_*.OPERATIONS` dict: an implemented operation
without a row in ECR_OPS fails; a row whose operation is not implemented yet is skipped.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from botocore.client import BaseClient
from botocore.config import Config

import berth.api.ecr
from berth.iam import tokens
from berth.iam.sessions import SessionClaims, new_access_key_id
from berth.iam.sessions import issue as issue_session
from tests.support.aws import (
    _SESSION,
    REGION,
    Outcome,
    UserSpec,
    basic,
    call,
    client,
    create_users,
    registry_token,
    signing_keys,
    token_claims,
)
from tests.support.oidc import AUDIENCE as OIDC_AUDIENCE
from tests.support.oidc import SUBJECT as OIDC_SUBJECT
from tests.support.oidc import Issuer
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

A, B = "123456789012", "111122223333"
A_KEY, A_SECRET = "AKIAAUTHZMATRIXAAAAA", "authz-matrix-admin-a-secret-0123456789"
B_KEY, B_SECRET = "AKIAAUTHZMATRIXBBBBB", "authz-matrix-admin-b-secret-0123456789"
UNKNOWN_KEY_ID = "AKIAAUTHZMATRIXZZZZZ"
PREFIX = "m/"  # every repository a cell creates lives under it
A_REPOS = f"arn:aws:ecr:{REGION}:{A}:repository/"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

# Scopes: what a target acts on.
NONE = "none"  # nothing (GET /v2/): any valid token
REPO = "repository"  # one repository of A
REGISTRY = "registry"  # A's registry as a whole (catalog, CreateRepository)
OWN = "own-registry"  # the caller's own registry (registry-wide ECR operations)

# Callers.
ANON = "anonymous"
GARBAGE = "garbage-token"
EXPIRED = "expired-token"
ALTERED_MAC = "altered-token-mac"
ALTERED_CLAIMS = "altered-token-claims"
WRONG_SECRET = "wrong-secret"
UNKNOWN_KEY = "unknown-key"
OTHER = "other-account"
OTHER_GRANTED = "other-account-granted"
DENY = "deny:"  # + the action denied
RES_DENIED = "denied-by-resource-policy"
LEAST = "least-privilege"
ADMIN = "admin"
GROUP_MEMBER = "group-member"  # a user with no policy of its own, in a group with "ecr:*" attached
ROLE_SESSION = "role-session"  # AssumeRole of a role with "ecr:*" attached
WEB_SESSION = "web-identity-session"  # AssumeRoleWithWebIdentity (a loopback OIDC issuer) of such a role
EXPIRED_SESSION = "expired-session"  # temporary credentials (and a registry token of theirs) past their end
NEW_KINDS = (GROUP_MEMBER, ROLE_SESSION, WEB_SESSION)
OCI_AUTH_FAILURES = (ANON, GARBAGE, EXPIRED, ALTERED_MAC, ALTERED_CLAIMS, EXPIRED_SESSION)
ECR_AUTH_FAILURES = {ANON: "MissingAuthenticationTokenException", WRONG_SECRET: "InvalidSignatureException",
                     UNKNOWN_KEY: "UnrecognizedClientException", EXPIRED_SESSION: "ExpiredTokenException"}
SUCCESS = "success"
ACCESS_DENIED = "AccessDeniedException"
RES_DENIED_USER = "res-denied"

REPOSITORY_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "GrantAccountB", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"}, "Action": "ecr:*"},
    {"Sid": "DenyOneUser", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{A}:user/{RES_DENIED_USER}"},
     "Action": "ecr:*"},
]})
REGISTRY_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "GrantAccountB", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"}, "Action": "ecr:*",
     "Resource": f"{A_REPOS}*"},
    {"Sid": "DenyOneUser", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{A}:user/{RES_DENIED_USER}"},
     "Action": "ecr:*", "Resource": "*"},
]})


def registry_policy_for(account: str) -> str:
    """A harmless registry policy for `account`'s own registry (grants a third account replication)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Replication", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
         "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
         "Resource": f"arn:aws:ecr:{REGION}:{account}:repository/*"}]})


# ---------------------------------------------------------------------------------------------
# Real content


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


@dataclass(frozen=True)
class Image:
    blobs: tuple[bytes, ...]  # config first
    body: bytes  # the exact manifest bytes

    @property
    def digest(self) -> str:
        return sha256(self.body)

    @property
    def layer(self) -> bytes:
        return self.blobs[1]


def new_image() -> Image:
    layers = [os.urandom(700)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(b) for b in layers]}}).encode()
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _descriptor(OCI_CONFIG, config),
                       "layers": [_descriptor(OCI_LAYER, b) for b in layers]}).encode()
    return Image((config, *layers), body)


def new_artifact(subject: Image) -> Image:
    """A signature-like OCI artifact whose subject is `subject`."""
    payload = os.urandom(64)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
                       "config": _descriptor(OCI_EMPTY, b"{}"),
                       "layers": [_descriptor("application/octet-stream", payload)],
                       "subject": _descriptor(OCI_MANIFEST, subject.body)}).encode()
    return Image((b"{}", payload), body)


# ---------------------------------------------------------------------------------------------
# The server, the accounts, the users


def implemented_operations() -> dict[str, Any]:
    """Every ECR operation the app serves: the union of the ops_* modules' OPERATIONS dicts."""
    ops: dict[str, Any] = {}
    for module in pkgutil.iter_modules(berth.api.ecr.__path__):
        if module.name.startswith("ops_"):
            ops.update(importlib.import_module(f"berth.api.ecr.{module.name}").OPERATIONS)
    return ops


def _statement(effect: str, actions: list[str] | str, resource: str) -> dict[str, Any]:
    return {"Effect": effect, "Action": actions, "Resource": resource}


def least_resource(scope: str) -> str:
    return {REPO: f"{A_REPOS}{PREFIX}*", REGISTRY: f"{A_REPOS}*"}.get(scope, "*")


@dataclass
class Staged:
    """What one cell's setup made: its repository in A, the image in it, and who acts where."""

    cell: Cell
    repo: str
    image: Image
    policy: bool  # the repositories carry REPOSITORY_POLICY
    acting: str  # the account a registry-wide operation acts on (the caller's)


class World:
    """The running server and everything the cells need to call it as anyone."""

    def __init__(self, server: BerthServer, users: dict[str, tuple[str, str]],
                 sessions: dict[str, dict[str, str]]) -> None:
        self.server = server
        self.users = users
        self.sessions = sessions  # caller -> temporary credentials
        self.a_host = f"{A}.dkr.ecr.{REGION}.localhost:{server.port}"
        self.http = httpx.Client(base_url=server.url, headers={"Host": self.a_host}, timeout=30)
        self._clients: dict[tuple[str | None, str | None], BaseClient] = {}
        self._tokens: dict[str, str] = {}
        self._counter = 0
        self._shared: dict[tuple[str, str], Staged] = {}
        self.registry_policy_put = False  # a cell may have left a registry policy behind
        self.admin_a = self.ecr(A_KEY, A_SECRET)
        self.admin_b = self.ecr(B_KEY, B_SECRET)
        self.admin_auth = basic(self.token(A_KEY, A_SECRET))

    def close(self) -> None:
        self.http.close()

    def ecr(self, key: str | None, secret: str | None, session_token: str | None = None) -> BaseClient:
        if (key, secret) not in self._clients:
            if session_token is None:
                self._clients[key, secret] = client("ecr", self.server.url, key, secret)
            else:
                self._clients[key, secret] = _SESSION.create_client(
                    "ecr", region_name=REGION, endpoint_url=self.server.url, aws_access_key_id=key,
                    aws_secret_access_key=secret, aws_session_token=session_token,
                    config=Config(retries={"total_max_attempts": 1}))
        return self._clients[key, secret]

    def session_ecr(self, caller: str) -> BaseClient:
        c = self.sessions[caller]
        return self.ecr(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])

    def token(self, key: str, secret: str, session_token: str | None = None) -> str:
        if key not in self._tokens:
            self._tokens[key] = registry_token(self.ecr(key, secret, session_token))
        return self._tokens[key]

    def session_token(self, caller: str) -> str:
        c = self.sessions[caller]
        return self.token(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])

    def user(self, name: str) -> tuple[str, str]:
        return self.users[name]

    # as A's administrator

    def admin(self, op: str, **params: Any) -> dict[str, Any]:
        out = call(self.admin_a, op, params)
        assert out.output is not None, f"setup {op} failed: {out.code}: {out.message}"
        return out.output

    def oci_admin(self, method: str, path: str, expect: int, **kw: Any) -> httpx.Response:
        r = self.http.request(method, path, headers={"Authorization": self.admin_auth, **kw.pop("headers", {})}, **kw)
        assert r.status_code == expect, f"setup {method} {path}: {r.status_code} {r.text}"
        return r

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        self.oci_admin("POST", f"/v2/{repo}/blobs/uploads/", 201, params={"digest": digest}, content=data,
                       headers={"Content-Type": "application/octet-stream"})
        return digest

    def push_image(self, repo: str, image: Image, ref: str) -> None:
        for blob in image.blobs:
            self.push_blob(repo, blob)
        self.oci_admin("PUT", f"/v2/{repo}/manifests/{ref}", 201, content=image.body,
                       headers={"Content-Type": OCI_MANIFEST})

    def start_upload(self, repo: str) -> str:
        return self.oci_admin("POST", f"/v2/{repo}/blobs/uploads/", 202).headers["Location"]

    def set_repository_policy(self, repo: str) -> None:
        self.admin("SetRepositoryPolicy", repositoryName=repo, policyText=REPOSITORY_POLICY)

    def put_registry_policy(self, account: str, text: str) -> None:
        self.registry_policy_put = True
        out = call(self.admin_b if account == B else self.admin_a, "PutRegistryPolicy", {"policyText": text})
        assert out.output is not None, f"setup PutRegistryPolicy failed: {out.code}: {out.message}"

    def clear_registry_policies(self) -> None:
        if not self.registry_policy_put:
            return
        for admin in (self.admin_a, self.admin_b):
            out = call(admin, "DeleteRegistryPolicy", {})
            assert out.code in (SUCCESS, "RegistryPolicyNotFoundException"), out
        self.registry_policy_put = False

    # one cell's content

    def stage(self, cell: Cell, scope: str, unauthenticated: bool) -> Staged:
        """A fresh repository of A with an image tagged v1, and the policies the cell needs.

        Callers that fail authentication change nothing: the cells of one target share theirs.
        """
        key = (cell.face, cell.target)
        if unauthenticated and key in self._shared:
            return self._shared[key]
        self._counter += 1
        slug = re.sub(r"[^a-z0-9]+", "-", f"{cell.target}-{cell.caller}".lower()).strip("-")
        repo = f"{PREFIX}{self._counter:04d}-{slug}"[:200]
        image = new_image()
        if scope in (REPO, REGISTRY):
            self.push_image(repo, image, "v1")
        policy = scope in (REPO, REGISTRY) and cell.caller != OTHER
        if policy:
            self.set_repository_policy(repo)
        if scope == REGISTRY and cell.caller in (OTHER_GRANTED, RES_DENIED):
            self.put_registry_policy(A, REGISTRY_POLICY)
        acting = B if cell.caller in (OTHER, OTHER_GRANTED) else A
        staged = Staged(cell, repo, image, policy, acting)
        if unauthenticated:
            self._shared[key] = staged
        return staged


@dataclass(frozen=True)
class Cell:
    face: str  # "oci" | "ecr"
    target: str  # endpoint or operation
    caller: str

    @property
    def id(self) -> str:
        return f"{self.target}-{self.caller}"


def _users_for(cells: list[Cell]) -> list[UserSpec]:
    """The IAM users of account A that the cells act as."""
    specs: dict[str, UserSpec] = {RES_DENIED_USER: UserSpec(RES_DENIED_USER, {
        "Version": "2012-10-17", "Statement": [_statement("Allow", "ecr:*", "*")]}),
        # its inline policy grants nothing: everything it may do comes from its group
        GROUP_MEMBER: UserSpec(GROUP_MEMBER, {"Version": "2012-10-17", "Statement": [
            _statement("Allow", "ecr:DescribeRegistry", f"arn:aws:ecr:{REGION}:{A}:nothing")]})}
    for cell in cells:
        if cell.caller.startswith(DENY):
            action = cell.caller[len(DENY):]
            name = "deny-" + action.removeprefix("ecr:")
            specs[name] = UserSpec(name, {"Version": "2012-10-17", "Statement": [
                _statement("Allow", "ecr:*", "*"), _statement("Deny", action, "*")]})
        elif cell.caller == LEAST:
            name = least_user(cell)
            if cell.face == "oci":
                ep = OCI_ENDPOINTS[cell.target]
                statements = [_statement("Allow", "ecr:GetAuthorizationToken", "*")]
                if ep.actions:
                    statements.append(_statement("Allow", list(ep.actions), least_resource(ep.scope)))
            else:
                statements = [_statement("Allow", list(ecr_actions(cell.target)),
                                         least_resource(ECR_OPS[cell.target].scope))]
            specs[name] = UserSpec(name, {"Version": "2012-10-17", "Statement": statements})
    return list(specs.values())


def least_user(cell: Cell) -> str:
    return f"least-{cell.face}-{cell.target}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("authz") / "data"
    server = BerthServer(data, env={"BERTH_ADMIN_ACCESS_KEY_ID": A_KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": A_SECRET},
                         args=["--auth", "iam"]).start()
    try:
        # Account B and its administrator, by the CLI, while A's users are made through the IAM API.
        create_b = subprocess.Popen([sys.executable, "-m", "berth", "admin", "create-account", B, "--access-key-id",
                                     B_KEY, "--secret-access-key", B_SECRET, "--data-dir", str(data)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            users = create_users(client("iam", server.url, A_KEY, A_SECRET), _users_for(OCI_CELLS + ECR_CELLS))
        finally:
            out, _ = create_b.communicate(timeout=120)
        assert create_b.returncode == 0, out.decode(errors="replace")
        issuer = Issuer()
        try:
            w = World(server, users, _principal_kinds(server, issuer))
            try:
                yield w
            finally:
                w.close()
        finally:
            issuer.close()
    finally:
        server.stop()


def _principal_kinds(server: BerthServer, issuer: Issuer) -> dict[str, dict[str, str]]:
    """The group, the roles and the temporary credentials of the new principal kinds."""
    iam = client("iam", server.url, A_KEY, A_SECRET)
    everything = iam.create_policy(PolicyName="matrix-ecr-all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [_statement("Allow", "ecr:*", "*")]}))["Policy"]["Arn"]
    iam.create_group(GroupName="matrix-group")
    iam.attach_group_policy(GroupName="matrix-group", PolicyArn=everything)
    iam.add_user_to_group(GroupName="matrix-group", UserName=GROUP_MEMBER)
    iam.create_role(RoleName="matrix-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"}, "Action": "sts:AssumeRole"}]}))
    iam.attach_role_policy(RoleName="matrix-role", PolicyArn=everything)
    provider = iam.create_open_id_connect_provider(Url=issuer.url, ClientIDList=[OIDC_AUDIENCE],
                                                   ThumbprintList=["0" * 40])["OpenIDConnectProviderArn"]
    url = issuer.url.split("://", 1)[1]
    iam.create_role(RoleName="matrix-web", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"StringEquals": {f"{url}:sub": OIDC_SUBJECT}}}]}))
    iam.attach_role_policy(RoleName="matrix-web", PolicyArn=everything)
    sts = client("sts", server.url, A_KEY, A_SECRET)
    role = sts.assume_role(RoleArn=f"arn:aws:iam::{A}:role/matrix-role", RoleSessionName="matrix")["Credentials"]
    web = client("sts", server.url, None, None).assume_role_with_web_identity(
        RoleArn=f"arn:aws:iam::{A}:role/matrix-web", RoleSessionName="matrix-ci",
        WebIdentityToken=issuer.token())["Credentials"]
    # temporary credentials that ended an hour ago, signed with the server's own keys
    keys = signing_keys(server.data_dir / "berth.db")
    key_id = next(reversed(keys))
    role_id = iam.get_role(RoleName="matrix-role")["Role"]["RoleId"]
    ended = SessionClaims(new_access_key_id(), A, f"arn:aws:sts::{A}:assumed-role/matrix-role/ended",
                          datetime.now(UTC) - timedelta(hours=1), role="matrix-role", role_id=role_id,
                          session="ended")
    token, secret = issue_session(ended, keys[key_id], key_id)
    expired = {"AccessKeyId": ended.access_key_id, "SecretAccessKey": secret, "SessionToken": token}
    return {ROLE_SESSION: {k: role[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")},
            WEB_SESSION: {k: web[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")},
            EXPIRED_SESSION: expired}


# ---------------------------------------------------------------------------------------------
# OCI: endpoints


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[httpx.Response], None] | None = None  # on the allowed answer
    intact: Callable[[], None] | None = None  # after any other answer: what the request would change is unchanged


@dataclass(frozen=True)
class OciEndpoint:
    actions: tuple[str, ...]  # the ECR actions the request needs (ECR-REFERENCE.md §5.3)
    scope: str
    ok: int  # the allowed answer
    build: Callable[[World, Staged], Req]  # stages what the request needs, as A's admin
    # a denied action that does not fail the request, and the answer then
    fallback: Mapping[str, int] = field(default_factory=dict)


def _eq(what: str, got: object, want: object) -> None:
    assert got == want, f"{what}: {got!r} != {want!r}"


def _admin_sees(w: World, method: str, path: str, status: int) -> Callable[[], None]:
    def intact() -> None:
        w.oci_admin(method, path, status)
    return intact


def _base(w: World, s: Staged) -> Req:
    return Req("GET", "/v2/", check=lambda r: _eq("body", r.json(), {}))


def _catalog(w: World, s: Staged) -> Req:
    return Req("GET", "/v2/_catalog", check=lambda r: _eq("listed", s.repo in r.json()["repositories"], True))


def _tags(w: World, s: Staged) -> Req:
    return Req("GET", f"/v2/{s.repo}/tags/list", check=lambda r: _eq("tags", r.json()["tags"], ["v1"]))


def _manifest_get(w: World, s: Staged) -> Req:
    return Req("GET", f"/v2/{s.repo}/manifests/v1", headers={"Accept": OCI_MANIFEST},
               check=lambda r: _eq("manifest", r.content, s.image.body))


def _manifest_head(w: World, s: Staged) -> Req:
    return Req("HEAD", f"/v2/{s.repo}/manifests/v1", headers={"Accept": OCI_MANIFEST},
               check=lambda r: _eq("digest", r.headers.get("Docker-Content-Digest"), s.image.digest))


def _manifest_put(w: World, s: Staged) -> Req:
    image = new_image()
    for blob in image.blobs:
        w.push_blob(s.repo, blob)
    return Req("PUT", f"/v2/{s.repo}/manifests/v2", content=image.body, headers={"Content-Type": OCI_MANIFEST},
               check=lambda r: _eq("digest", r.headers.get("Docker-Content-Digest"), image.digest),
               intact=_admin_sees(w, "HEAD", f"/v2/{s.repo}/manifests/v2", 404))


def _manifest_delete(w: World, s: Staged) -> Req:
    return Req("DELETE", f"/v2/{s.repo}/manifests/{s.image.digest}",
               intact=_admin_sees(w, "HEAD", f"/v2/{s.repo}/manifests/v1", 200))


def _blob_get(w: World, s: Staged) -> Req:
    return Req("GET", f"/v2/{s.repo}/blobs/{sha256(s.image.layer)}",
               check=lambda r: _eq("blob", r.content, s.image.layer))


def _blob_head(w: World, s: Staged) -> Req:
    return Req("HEAD", f"/v2/{s.repo}/blobs/{sha256(s.image.layer)}",
               check=lambda r: _eq("length", r.headers.get("Content-Length"), str(len(s.image.layer))))


def _blob_delete(w: World, s: Staged) -> Req:
    digest = w.push_blob(s.repo, os.urandom(300))  # a blob no manifest references
    return Req("DELETE", f"/v2/{s.repo}/blobs/{digest}",
               intact=_admin_sees(w, "HEAD", f"/v2/{s.repo}/blobs/{digest}", 200))


def _upload_start(w: World, s: Staged) -> Req:
    return Req("POST", f"/v2/{s.repo}/blobs/uploads/",
               check=lambda r: _eq("location", r.headers["Location"].startswith(f"/v2/{s.repo}/blobs/uploads/"), True))


def _upload_monolithic(w: World, s: Staged) -> Req:
    data = os.urandom(500)
    return Req("POST", f"/v2/{s.repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data,
               headers={"Content-Type": "application/octet-stream"},
               check=lambda r: _eq("digest", r.headers.get("Docker-Content-Digest"), sha256(data)),
               intact=_admin_sees(w, "HEAD", f"/v2/{s.repo}/blobs/{sha256(data)}", 404))


def _upload_untouched(w: World, location: str) -> Callable[[], None]:
    def intact() -> None:
        _eq("upload", w.oci_admin("GET", location, 204).headers.get("Range"), "0-0")
    return intact


def _upload_patch(w: World, s: Staged) -> Req:
    data = os.urandom(400)
    location = w.start_upload(s.repo)
    return Req("PATCH", location, content=data,
               headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(data) - 1}"},
               check=lambda r: _eq("range", r.headers.get("Range"), f"0-{len(data) - 1}"),
               intact=_upload_untouched(w, location))


def _upload_put(w: World, s: Staged) -> Req:
    data = os.urandom(400)
    location = w.start_upload(s.repo)
    return Req("PUT", location, params={"digest": sha256(data)}, content=data,
               headers={"Content-Type": "application/octet-stream"},
               check=lambda r: _eq("digest", r.headers.get("Docker-Content-Digest"), sha256(data)),
               intact=_upload_untouched(w, location))


def _upload_get(w: World, s: Staged) -> Req:
    return Req("GET", w.start_upload(s.repo), check=lambda r: _eq("range", r.headers.get("Range"), "0-0"))


def _upload_delete(w: World, s: Staged) -> Req:
    location = w.start_upload(s.repo)
    return Req("DELETE", location, intact=_upload_untouched(w, location))


def _mount(w: World, s: Staged) -> Req:
    source = f"{s.repo}-src"
    digest = w.push_blob(source, os.urandom(600))
    if s.policy:
        w.set_repository_policy(source)
    return Req("POST", f"/v2/{s.repo}/blobs/uploads/", params={"mount": digest, "from": source},
               check=lambda r: _eq("location", r.headers.get("Location"), f"/v2/{s.repo}/blobs/{digest}"),
               intact=_admin_sees(w, "HEAD", f"/v2/{s.repo}/blobs/{digest}", 404))


def _referrers(w: World, s: Staged) -> Req:
    referrer = new_artifact(s.image)
    w.push_image(s.repo, referrer, referrer.digest)
    return Req("GET", f"/v2/{s.repo}/referrers/{s.image.digest}",
               check=lambda r: _eq("referrers", [m["digest"] for m in r.json()["manifests"]], [referrer.digest]))


PUSH = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload")
OCI_ENDPOINTS: dict[str, OciEndpoint] = {
    "base": OciEndpoint((), NONE, 200, _base),
    "catalog": OciEndpoint(("ecr:DescribeRepositories",), REGISTRY, 200, _catalog),
    "tags-list": OciEndpoint(("ecr:ListImages",), REPO, 200, _tags),
    "manifest-get": OciEndpoint(("ecr:BatchGetImage",), REPO, 200, _manifest_get),
    "manifest-head": OciEndpoint(("ecr:BatchGetImage",), REPO, 200, _manifest_head),
    "manifest-put": OciEndpoint(("ecr:PutImage",), REPO, 201, _manifest_put),
    "manifest-delete": OciEndpoint(("ecr:BatchDeleteImage",), REPO, 202, _manifest_delete),
    "blob-get": OciEndpoint(("ecr:GetDownloadUrlForLayer",), REPO, 200, _blob_get),
    "blob-head": OciEndpoint(("ecr:BatchCheckLayerAvailability",), REPO, 200, _blob_head),
    "blob-delete": OciEndpoint(("ecr:BatchDeleteImage",), REPO, 202, _blob_delete),
    "upload-post": OciEndpoint(("ecr:InitiateLayerUpload",), REPO, 202, _upload_start),
    "upload-post-monolithic": OciEndpoint(PUSH, REPO, 201, _upload_monolithic),
    "upload-patch": OciEndpoint(("ecr:UploadLayerPart",), REPO, 202, _upload_patch),
    "upload-put": OciEndpoint(("ecr:CompleteLayerUpload",), REPO, 201, _upload_put),
    "upload-get": OciEndpoint(("ecr:InitiateLayerUpload",), REPO, 204, _upload_get),
    "upload-delete": OciEndpoint(("ecr:InitiateLayerUpload",), REPO, 204, _upload_delete),
    # Without pull rights on the source, a mount is not refused: it becomes a plain upload (202).
    "mount": OciEndpoint((*PUSH, "ecr:GetDownloadUrlForLayer"), REPO, 201, _mount,
                         fallback={"ecr:GetDownloadUrlForLayer": 202}),
    "referrers": OciEndpoint(("ecr:BatchGetImage",), REPO, 200, _referrers),
}


def oci_callers(ep: OciEndpoint) -> list[str]:
    callers = [*OCI_AUTH_FAILURES, OTHER, OTHER_GRANTED, *(DENY + a for a in ep.actions)]
    if ep.scope != NONE:
        callers.append(RES_DENIED)
    return [*callers, LEAST, *NEW_KINDS, ADMIN]


def expected_oci(ep: OciEndpoint, caller: str) -> int:
    if caller in OCI_AUTH_FAILURES:
        return 401
    if ep.scope == NONE:  # GET /v2/ checks the token and nothing else
        return ep.ok
    if caller in (OTHER, RES_DENIED):
        return 403
    if caller.startswith(DENY):
        return ep.fallback.get(caller[len(DENY):], 403)
    assert caller in (OTHER_GRANTED, LEAST, ADMIN, *NEW_KINDS), caller
    return ep.ok


OCI_CELLS = [Cell("oci", name, caller) for name, ep in OCI_ENDPOINTS.items() for caller in oci_callers(ep)]


def _altered(token: str, part: int) -> str:
    """The token with one character of its claims (part 1) or its MAC (part 2) changed."""
    pieces = token.split(".")
    if part == 1:  # claims that name A's root, under the MAC of the admin's claims
        claims = {**token_claims(token), "sub": f"arn:aws:iam::{A}:root"}
        pieces[1] = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
                                             ).rstrip(b"=").decode()
    else:  # a character in the middle: the last one may only carry padding bits
        mac = pieces[2]
        i = len(mac) // 2
        pieces[2] = mac[:i] + ("A" if mac[i] != "A" else "B") + mac[i + 1:]
    altered = ".".join(pieces)
    assert altered != token
    return altered


def oci_authorization(w: World, cell: Cell) -> str | None:
    caller = cell.caller
    if caller == ANON:
        return None
    if caller == GARBAGE:
        return basic("not-a-registry-token")
    if caller == EXPIRED:
        keys = signing_keys(w.server.data_dir / "berth.db")
        key_id = next(reversed(keys))
        token, expires = tokens.issue(f"arn:aws:iam::{A}:user/admin", A, keys[key_id],
                                      datetime.now(UTC) - timedelta(hours=13), key_id=key_id)
        assert expires < datetime.now(UTC)
        return basic(token)
    if caller == ALTERED_MAC:
        return basic(_altered(w.token(A_KEY, A_SECRET), 2))
    if caller == ALTERED_CLAIMS:
        return basic(_altered(w.token(A_KEY, A_SECRET), 1))
    if caller in (OTHER, OTHER_GRANTED):
        return basic(w.token(B_KEY, B_SECRET))
    if caller == ADMIN:
        return w.admin_auth
    if caller == GROUP_MEMBER:
        return basic(w.token(*w.user(GROUP_MEMBER)))
    if caller in (ROLE_SESSION, WEB_SESSION):
        return basic(w.session_token(caller))
    if caller == EXPIRED_SESSION:  # a registry token of a role session, ended with its credentials
        keys = signing_keys(w.server.data_dir / "berth.db")
        key_id = next(reversed(keys))
        token, _ = tokens.issue(f"arn:aws:sts::{A}:assumed-role/matrix-role/ended", A, keys[key_id],
                                datetime.now(UTC) - timedelta(hours=2), timedelta(minutes=15), key_id=key_id,
                                extra={"rid": "AROAMATRIXROLEENDED00", "rpath": "/"})
        return basic(token)
    if caller == RES_DENIED:
        return basic(w.token(*w.user(RES_DENIED_USER)))
    if caller == LEAST:
        return basic(w.token(*w.user(least_user(cell))))
    assert caller.startswith(DENY), caller
    return basic(w.token(*w.user("deny-" + caller[len(DENY):].removeprefix("ecr:"))))


def _oci_error(r: httpx.Response, code: str) -> None:
    if r.request.method == "HEAD":
        return
    codes = [e.get("code") for e in r.json().get("errors", [])]
    assert code in codes, r.text


@pytest.mark.parametrize("cell", OCI_CELLS, ids=lambda c: c.id)
def test_oci(world: World, cell: Cell) -> None:
    ep = OCI_ENDPOINTS[cell.target]
    staged = world.stage(cell, ep.scope, cell.caller in OCI_AUTH_FAILURES)
    try:
        req = ep.build(world, staged)
        auth = oci_authorization(world, cell)
        headers = {**req.headers, **({"Authorization": auth} if auth else {})}
        r = world.http.request(req.method, req.path, params=req.params, content=req.content, headers=headers)
    finally:
        world.clear_registry_policies()
    want = expected_oci(ep, cell.caller)
    assert r.status_code == want, f"{req.method} {req.path} as {cell.caller}: {r.status_code} {r.text}"
    if want == 401:
        assert r.headers.get("WWW-Authenticate", "").startswith("Basic realm="), r.headers
        _oci_error(r, "UNAUTHORIZED")
    elif want == 403:
        _oci_error(r, "DENIED")
    if want == ep.ok:
        if req.check is not None:
            req.check(r)
    elif req.intact is not None:
        req.intact()


# ---------------------------------------------------------------------------------------------
# ECR: operations


@dataclass(frozen=True)
class EcrOp:
    scope: str
    params: Callable[[World, Staged], dict[str, Any]]  # stages what the call needs, as A's admin
    check: Callable[[dict[str, Any], Staged], None] | None = None  # on the allowed answer
    also: tuple[str, ...] = ()  # actions the call needs besides ecr:<Operation>
    intact: Callable[[World, Staged], None] | None = None  # after a refusal: what the call would change is unchanged
    # errors that only the handler answers, past authorization: the state it acts on moved on by itself
    # (a back-fill with nothing to copy may finish before the cell stops it)
    authorized: tuple[str, ...] = ()


def ecr_actions(op: str) -> tuple[str, ...]:
    return (f"ecr:{op}", *ECR_OPS[op].also)


def _no_failures(out: dict[str, Any], s: Staged) -> None:
    _eq("failures", out.get("failures"), [])


def _registry_is_callers(out: dict[str, Any], s: Staged) -> None:
    _eq("registryId", out.get("registryId"), s.acting)


def _token_is_callers(out: dict[str, Any], s: Staged) -> None:
    data = out["authorizationData"]
    token = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")[2]
    _eq("token account", token_claims(token)["acct"], s.acting)


def _registry_policy_in_callers_registry(w: World, s: Staged) -> dict[str, Any]:
    w.put_registry_policy(s.acting, registry_policy_for(s.acting))
    return {}


def _upload_id(w: World, s: Staged) -> str:
    return str(w.admin("InitiateLayerUpload", registryId=A, repositoryName=s.repo)["uploadId"])


def _upload_part(w: World, s: Staged) -> dict[str, Any]:
    data = os.urandom(400)
    return {"repositoryName": s.repo, "uploadId": _upload_id(w, s), "partFirstByte": 0,
            "partLastByte": len(data) - 1, "layerPartBlob": data}


def _complete_upload(w: World, s: Staged) -> dict[str, Any]:
    data = os.urandom(400)
    upload = _upload_id(w, s)
    w.admin("UploadLayerPart", registryId=A, repositoryName=s.repo, uploadId=upload, partFirstByte=0,
            partLastByte=len(data) - 1, layerPartBlob=data)
    return {"repositoryName": s.repo, "uploadId": upload, "layerDigests": [sha256(data)]}


def _put_image(w: World, s: Staged) -> dict[str, Any]:
    image = new_image()
    for blob in image.blobs:
        w.push_blob(s.repo, blob)
    return {"repositoryName": s.repo, "imageManifest": image.body.decode(), "imageManifestMediaType": OCI_MANIFEST,
            "imageTag": "v2"}


def _referrer(w: World, s: Staged) -> dict[str, Any]:
    referrer = new_artifact(s.image)
    w.push_image(s.repo, referrer, referrer.digest)
    return {"repositoryName": s.repo, "subjectId": {"imageDigest": s.image.digest}}


def _image_there(w: World, s: Staged) -> None:
    _eq("image", w.admin("BatchGetImage", registryId=A, repositoryName=s.repo,
                         imageIds=[{"imageDigest": s.image.digest}])["failures"], [])


def _repository_there(w: World, s: Staged) -> None:
    _eq("repository", len(w.admin("DescribeRepositories", registryId=A, repositoryNames=[s.repo])["repositories"]), 1)


def _no_repository(w: World, s: Staged) -> None:
    out = call(w.admin_a, "DescribeRepositories", {"registryId": A, "repositoryNames": [f"{s.repo}-new"]})
    _eq("new repository", out.code, "RepositoryNotFoundException")


def _no_tag_v2(w: World, s: Staged) -> None:
    out = w.admin("BatchGetImage", registryId=A, repositoryName=s.repo, imageIds=[{"imageTag": "v2"}])
    _eq("images tagged v2", out["images"], [])


def _policy_unchanged(w: World, s: Staged) -> None:
    out = call(w.admin_a, "GetRepositoryPolicy", {"registryId": A, "repositoryName": s.repo})
    if s.policy:
        _eq("policy", json.loads(out.output["policyText"]) if out.output else out.code, json.loads(REPOSITORY_POLICY))
    else:
        _eq("policy", out.code, "RepositoryPolicyNotFoundException")


def _still_mutable(w: World, s: Staged) -> None:
    repos = w.admin("DescribeRepositories", registryId=A, repositoryNames=[s.repo])["repositories"]
    _eq("imageTagMutability", repos[0]["imageTagMutability"], "MUTABLE")


def _untagged(w: World, s: Staged) -> None:
    _eq("tags", w.admin("ListTagsForResource", resourceArn=f"{A_REPOS}{s.repo}")["tags"], [])


# SetRepositoryPolicy's new text: still grants B (so B keeps access) and differs from the staged one.
NEW_REPOSITORY_POLICY = json.dumps({**json.loads(REPOSITORY_POLICY), "Statement": [
    *json.loads(REPOSITORY_POLICY)["Statement"],
    {"Sid": "PullForAnother", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
     "Action": "ecr:BatchGetImage"}]})


def _repo(**extra: Any) -> Callable[[World, Staged], dict[str, Any]]:
    return lambda w, s: {"repositoryName": s.repo, **extra}


def _arn(**extra: Any) -> Callable[[World, Staged], dict[str, Any]]:
    return lambda w, s: {"resourceArn": f"{A_REPOS}{s.repo}", **extra}


def _nonempty(key: str) -> Callable[[dict[str, Any], Staged], None]:
    return lambda out, s: _eq(f"{key} non-empty", bool(out.get(key)), True)


# lifecycle (berth/api/ecr/ops_lifecycle.py)
LIFECYCLE_POLICY = json.dumps({"rules": [{"rulePriority": 1, "selection": {
    "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 30},
    "action": {"type": "expire"}}]})


REPLICATION_DESTINATION = {"region": "us-east-1", "registryId": "999999999999"}


def _acting_admin(w: World, s: Staged) -> BaseClient:
    return w.admin_b if s.acting == B else w.admin_a


def _with_replication(w: World, s: Staged) -> dict[str, Any]:
    out = call(_acting_admin(w, s), "PutReplicationConfiguration", {"replicationConfiguration": {
        "rules": [{"destinations": [REPLICATION_DESTINATION]}]}})
    assert out.output is not None, f"setup PutReplicationConfiguration: {out.code}: {out.message}"
    return {"destination": REPLICATION_DESTINATION}


def _with_backfill(w: World, s: Staged) -> dict[str, Any]:
    admin = _acting_admin(w, s)
    out = call(admin, "StartReplicationBackfill", _with_replication(w, s))
    if out.output is not None:
        return {"replicationBackfillId": out.output["replicationBackfillId"]}
    assert out.code == "ReplicationBackfillInProgressException", f"setup StartReplicationBackfill: {out.code}"
    listed = call(admin, "ListReplicationBackfills", {}).output
    assert listed is not None
    return {"replicationBackfillId": listed["backfills"][0]["replicationBackfillId"]}


# scanning and managed signing (berth/api/ecr/ops_scanning.py)

def _image_id(s: Staged) -> dict[str, Any]:
    return {"repositoryName": s.repo, "imageId": {"imageDigest": s.image.digest}}


def _with_scan(w: World, s: Staged) -> dict[str, Any]:
    out = call(w.admin_a, "StartImageScan", {"registryId": A, **_image_id(s)})
    assert out.output is not None or out.code == "LimitExceededException", out  # staged before
    return _image_id(s)


def _signing_rules(s: Staged) -> dict[str, Any]:
    return {"signingConfiguration": {"rules": [
        {"signingProfileArn": f"arn:aws:signer:us-east-1:{s.acting}:/signing-profiles/matrix"}]}}


def _with_signing(w: World, s: Staged) -> dict[str, Any]:
    out = call(_acting_admin(w, s), "PutSigningConfiguration", _signing_rules(s))
    assert out.output is not None, f"setup PutSigningConfiguration: {out.code}: {out.message}"
    return {}


def _with_lifecycle_policy(w: World, s: Staged) -> dict[str, Any]:
    w.admin("PutLifecyclePolicy", registryId=A, repositoryName=s.repo, lifecyclePolicyText=LIFECYCLE_POLICY)
    return {"repositoryName": s.repo}


def _with_preview(w: World, s: Staged) -> dict[str, Any]:
    out = call(w.admin_a, "StartLifecyclePolicyPreview", {"registryId": A, "repositoryName": s.repo,
                                                           "lifecyclePolicyText": LIFECYCLE_POLICY})
    assert out.output is not None or out.code == "LifecyclePolicyPreviewInProgressException", out  # staged before
    return {"repositoryName": s.repo}


def _lifecycle_policy(w: World, s: Staged) -> str:
    out = call(w.admin_a, "GetLifecyclePolicy", {"registryId": A, "repositoryName": s.repo})
    return out.output["lifecyclePolicyText"] if out.output else out.code


def _no_lifecycle_policy(w: World, s: Staged) -> None:
    _eq("lifecycle policy", _lifecycle_policy(w, s), "LifecyclePolicyNotFoundException")


def _lifecycle_policy_there(w: World, s: Staged) -> None:
    _eq("lifecycle policy", _lifecycle_policy(w, s), LIFECYCLE_POLICY)


def _exclusion_arn(s: Staged) -> str:
    return f"arn:aws:iam::{s.acting}:role/matrix-{hashlib.sha256(s.repo.encode()).hexdigest()[:12]}"


def _with_exclusion(w: World, s: Staged) -> dict[str, Any]:
    out = call(_acting_admin(w, s), "RegisterPullTimeUpdateExclusion", {"principalArn": _exclusion_arn(s)})
    assert out.output is not None or out.code == "ExclusionAlreadyExistsException", out  # staged before
    return {"principalArn": _exclusion_arn(s)}


def _exclusions(w: World, s: Staged) -> list[str]:
    out = call(_acting_admin(w, s), "ListPullTimeUpdateExclusions", {})
    assert out.output is not None
    return list(out.output["pullTimeUpdateExclusions"])


def _not_excluded(w: World, s: Staged) -> None:
    _eq("excluded", _exclusion_arn(s) in _exclusions(w, s), False)


def _still_excluded(w: World, s: Staged) -> None:
    _eq("excluded", _exclusion_arn(s) in _exclusions(w, s), True)
# creation templates and pull-through cache rules: registry-wide, in the caller's own registry; each cell
# names its own prefix and removes what it made (ECR's quota is 50 rules per registry)

def _prefix(s: Staged, kind: str) -> str:
    return f"{kind}{s.repo[len(PREFIX):len(PREFIX) + 4]}"


def _staged(op: str, kind: str, key: str, **made: Any) -> Callable[[World, Staged], dict[str, Any]]:
    def params(w: World, s: Staged) -> dict[str, Any]:
        out = call(_acting_admin(w, s), op, {key: _prefix(s, kind), **made})
        assert out.output is not None, f"setup {op} failed: {out.code}: {out.message}"
        return {key: _prefix(s, kind)}
    return params


_TEMPLATE = {"appliedFor": ["REPLICATION"]}
_RULE = {"upstreamRegistryUrl": "127.0.0.1:9"}


ECR_OPS: dict[str, EcrOp] = {
    # the caller's own registry
    "GetAuthorizationToken": EcrOp(OWN, lambda w, s: {}, _token_is_callers),
    "DescribeRegistry": EcrOp(OWN, lambda w, s: {}, _registry_is_callers),
    "PutRegistryPolicy": EcrOp(OWN, lambda w, s: {"policyText": registry_policy_for(s.acting)}, _registry_is_callers),
    "GetRegistryPolicy": EcrOp(OWN, _registry_policy_in_callers_registry, _registry_is_callers),
    "DeleteRegistryPolicy": EcrOp(OWN, _registry_policy_in_callers_registry, _registry_is_callers),
    "GetAccountSetting": EcrOp(OWN, lambda w, s: {"name": "REGISTRY_POLICY_SCOPE"},
                               lambda out, s: _eq("value", out.get("value"), "V2")),
    "PutAccountSetting": EcrOp(OWN, lambda w, s: {"name": "REGISTRY_POLICY_SCOPE", "value": "V2"}),
    # A's registry
    "CreateRepository": EcrOp(REGISTRY, lambda w, s: {"repositoryName": f"{s.repo}-new"},
                              lambda out, s: _eq("registryId", out["repository"]["registryId"], A),
                              intact=_no_repository),
    # one repository of A
    "DescribeRepositories": EcrOp(REPO, lambda w, s: {"repositoryNames": [s.repo]},
                                  lambda out, s: _eq("names", [r["repositoryName"] for r in out["repositories"]],
                                                     [s.repo])),
    "DeleteRepository": EcrOp(REPO, _repo(force=True), intact=_repository_there),
    "PutImageTagMutability": EcrOp(REPO, _repo(imageTagMutability="IMMUTABLE"), intact=_still_mutable),
    "PutImageScanningConfiguration": EcrOp(REPO, _repo(imageScanningConfiguration={"scanOnPush": True})),
    "TagResource": EcrOp(REPO, _arn(tags=[{"Key": "team", "Value": "matrix"}]), intact=_untagged),
    "UntagResource": EcrOp(REPO, _arn(tagKeys=["team"])),
    "ListTagsForResource": EcrOp(REPO, _arn()),
    "SetRepositoryPolicy": EcrOp(REPO, _repo(policyText=NEW_REPOSITORY_POLICY), intact=_policy_unchanged),
    "GetRepositoryPolicy": EcrOp(REPO, _repo()),
    "DeleteRepositoryPolicy": EcrOp(REPO, _repo(), intact=_policy_unchanged),
    "ListImages": EcrOp(REPO, _repo(), _nonempty("imageIds")),
    "DescribeImages": EcrOp(REPO, _repo(), _nonempty("imageDetails")),
    "BatchGetImage": EcrOp(REPO, _repo(imageIds=[{"imageTag": "v1"}]),
                           lambda out, s: (_no_failures(out, s), _eq("images", len(out["images"]), 1))),
    "BatchDeleteImage": EcrOp(REPO, lambda w, s: {"repositoryName": s.repo,
                                                  "imageIds": [{"imageDigest": s.image.digest}]}, _no_failures,
                               intact=_image_there),
    "PutImage": EcrOp(REPO, _put_image, intact=_no_tag_v2),
    # "The IAM principal invoking this operation must have the ecr:BatchGetImage permission." (the model)
    "ListImageReferrers": EcrOp(REPO, _referrer, also=("ecr:BatchGetImage",)),
    "InitiateLayerUpload": EcrOp(REPO, _repo(), _nonempty("uploadId")),
    "UploadLayerPart": EcrOp(REPO, _upload_part),
    "CompleteLayerUpload": EcrOp(REPO, _complete_upload),
    "BatchCheckLayerAvailability": EcrOp(REPO, lambda w, s: {"repositoryName": s.repo,
                                                             "layerDigests": [sha256(s.image.layer)]}, _no_failures),
    "GetDownloadUrlForLayer": EcrOp(REPO, lambda w, s: {"repositoryName": s.repo, "layerDigest": sha256(s.image.layer)},
                                    _nonempty("downloadUrl")),
    "PutLifecyclePolicy": EcrOp(REPO, _repo(lifecyclePolicyText=LIFECYCLE_POLICY), intact=_no_lifecycle_policy),
    "GetLifecyclePolicy": EcrOp(REPO, _with_lifecycle_policy,
                                lambda out, s: _eq("text", out.get("lifecyclePolicyText"), LIFECYCLE_POLICY)),
    "DeleteLifecyclePolicy": EcrOp(REPO, _with_lifecycle_policy, intact=_lifecycle_policy_there),
    "StartLifecyclePolicyPreview": EcrOp(REPO, _repo(lifecyclePolicyText=LIFECYCLE_POLICY),
                                         lambda out, s: _eq("status", out.get("status"), "IN_PROGRESS")),
    "GetLifecyclePolicyPreview": EcrOp(REPO, _with_preview, _nonempty("status")),
    "UpdateImageStorageClass": EcrOp(REPO, lambda w, s: {"repositoryName": s.repo, "imageId": {
        "imageDigest": s.image.digest}, "targetStorageClass": "ARCHIVE"},
        lambda out, s: _eq("imageStatus", out.get("imageStatus"), "ARCHIVED"), intact=_image_there),
    "RegisterPullTimeUpdateExclusion": EcrOp(OWN, lambda w, s: {"principalArn": _exclusion_arn(s)},
                                             intact=_not_excluded),
    "DeregisterPullTimeUpdateExclusion": EcrOp(OWN, _with_exclusion, intact=_still_excluded),
    "ListPullTimeUpdateExclusions": EcrOp(OWN, lambda w, s: {}),
    "PutReplicationConfiguration": EcrOp(OWN, lambda w, s: {"replicationConfiguration": {
        "rules": [{"destinations": [REPLICATION_DESTINATION]}]}}, lambda out, s: _eq(
        "destinations", out["replicationConfiguration"]["rules"][0]["destinations"], [REPLICATION_DESTINATION])),
    "DescribeImageReplicationStatus": EcrOp(REPO, lambda w, s: {"repositoryName": s.repo,
                                                                "imageId": {"imageDigest": s.image.digest}}),
    "StartReplicationBackfill": EcrOp(OWN, _with_replication,
                                      authorized=("ReplicationBackfillInProgressException",)),
    "StopReplicationBackfill": EcrOp(OWN, _with_backfill, authorized=("ReplicationBackfillInvalidStatusException",)),
    "ListReplicationBackfills": EcrOp(OWN, lambda w, s: {}),
    "DescribeReplicationBackfillResults": EcrOp(OWN, _with_backfill),
    "PutRegistryScanningConfiguration": EcrOp(OWN, lambda w, s: {"scanType": "BASIC", "rules": []},
                                              _nonempty("registryScanningConfiguration")),
    "GetRegistryScanningConfiguration": EcrOp(OWN, lambda w, s: {}, _registry_is_callers),
    # no registryId in its input: it reads the caller's own registry (another account's repository is
    # REPOSITORY_NOT_FOUND there), each named repository authorized on its own ARN
    "BatchGetRepositoryScanningConfiguration": EcrOp(OWN, lambda w, s: {"repositoryNames": [s.repo]}),
    # a basic scan is allowed once per image per 24 h: a cell whose image a setup already scanned is past
    # authorization when it hears LimitExceededException
    "StartImageScan": EcrOp(REPO, lambda w, s: _image_id(s), authorized=("LimitExceededException",)),
    "DescribeImageScanFindings": EcrOp(REPO, _with_scan, _nonempty("imageScanStatus")),
    "PutSigningConfiguration": EcrOp(OWN, lambda w, s: _signing_rules(s), _nonempty("signingConfiguration")),
    "GetSigningConfiguration": EcrOp(OWN, _with_signing, _registry_is_callers),
    "DeleteSigningConfiguration": EcrOp(OWN, _with_signing, _registry_is_callers),
    "DescribeImageSigningStatus": EcrOp(REPO, lambda w, s: _image_id(s),
                                        lambda out, s: _eq("registryId", out.get("registryId"), A)),
    "CreateRepositoryCreationTemplate": EcrOp(OWN, lambda w, s: {"prefix": _prefix(s, "t"), **_TEMPLATE},
                                              _registry_is_callers),
    "DescribeRepositoryCreationTemplates": EcrOp(OWN, lambda w, s: {}, _registry_is_callers),
    "UpdateRepositoryCreationTemplate": EcrOp(OWN, lambda w, s: {**_staged(
        "CreateRepositoryCreationTemplate", "t", "prefix", **_TEMPLATE)(w, s), "description": "matrix"},
        _registry_is_callers),
    "DeleteRepositoryCreationTemplate": EcrOp(OWN, _staged("CreateRepositoryCreationTemplate", "t", "prefix",
                                                           **_TEMPLATE), _registry_is_callers),
    "CreatePullThroughCacheRule": EcrOp(OWN, lambda w, s: {"ecrRepositoryPrefix": _prefix(s, "p"), **_RULE},
                                        _registry_is_callers),
    "DescribePullThroughCacheRules": EcrOp(OWN, lambda w, s: {}),
    "UpdatePullThroughCacheRule": EcrOp(OWN, lambda w, s: {**_staged(
        "CreatePullThroughCacheRule", "p", "ecrRepositoryPrefix", **_RULE)(w, s),
        "customRoleArn": f"arn:aws:iam::{s.acting}:role/matrix"}, _registry_is_callers),
    "DeletePullThroughCacheRule": EcrOp(OWN, _staged("CreatePullThroughCacheRule", "p", "ecrRepositoryPrefix",
                                                     **_RULE), _registry_is_callers),
    "ValidatePullThroughCacheRule": EcrOp(OWN, _staged("CreatePullThroughCacheRule", "p", "ecrRepositoryPrefix",
                                                       **_RULE), _registry_is_callers),
}


def ecr_callers(op: str) -> list[str]:
    spec = ECR_OPS.get(op)
    if spec is None:  # implemented but not in the table: one cell, which fails and says why
        return [ADMIN]
    callers = [*ECR_AUTH_FAILURES, OTHER, OTHER_GRANTED, *(DENY + a for a in ecr_actions(op))]
    if spec.scope != OWN:
        callers.append(RES_DENIED)
    return [*callers, LEAST, *NEW_KINDS, ADMIN]


def expected_ecr(spec: EcrOp, caller: str) -> str:
    if caller in ECR_AUTH_FAILURES:
        return ECR_AUTH_FAILURES[caller]
    if spec.scope == OWN and caller in (OTHER, OTHER_GRANTED):
        return SUCCESS  # B acts on its own registry
    if caller in (OTHER, RES_DENIED) or caller.startswith(DENY):
        return ACCESS_DENIED
    assert caller in (OTHER_GRANTED, LEAST, ADMIN, *NEW_KINDS), caller
    return SUCCESS


IMPLEMENTED = implemented_operations()
ECR_CELLS = [Cell("ecr", op, caller) for op in sorted(set(ECR_OPS) | set(IMPLEMENTED)) for caller in ecr_callers(op)]


def ecr_client(w: World, cell: Cell) -> BaseClient:
    caller = cell.caller
    if caller == ANON:
        return w.ecr(None, None)
    if caller == WRONG_SECRET:
        return w.ecr(A_KEY, A_SECRET + "x")
    if caller == UNKNOWN_KEY:
        return w.ecr(UNKNOWN_KEY_ID, A_SECRET)
    if caller in (OTHER, OTHER_GRANTED):
        return w.admin_b
    if caller == ADMIN:
        return w.admin_a
    if caller == GROUP_MEMBER:
        return w.ecr(*w.user(GROUP_MEMBER))
    if caller in (ROLE_SESSION, WEB_SESSION, EXPIRED_SESSION):
        return w.session_ecr(caller)
    if caller == RES_DENIED:
        return w.ecr(*w.user(RES_DENIED_USER))
    if caller == LEAST:
        return w.ecr(*w.user(least_user(cell)))
    assert caller.startswith(DENY), caller
    return w.ecr(*w.user("deny-" + caller[len(DENY):].removeprefix("ecr:")))


@pytest.mark.parametrize("cell", ECR_CELLS, ids=lambda c: c.id)
def test_ecr(world: World, cell: Cell) -> None:
    spec = ECR_OPS.get(cell.target)
    if spec is None:
        pytest.fail(f"{cell.target} is implemented but has no row in ECR_OPS: add its minimal params")
    if cell.target not in IMPLEMENTED:
        pytest.fail(f"{cell.target} has a row in ECR_OPS but the server does not implement it")
    staged = world.stage(cell, spec.scope, cell.caller in ECR_AUTH_FAILURES)
    try:
        params = spec.params(world, staged)
        members = world.admin_a.meta.service_model.operation_model(cell.target).input_shape.members
        if spec.scope != OWN and "registryId" in members:
            params.setdefault("registryId", A)
        out: Outcome = call(ecr_client(world, cell), cell.target, params)
        want = expected_ecr(spec, cell.caller)
        if want == SUCCESS and out.code in spec.authorized:
            return
        assert out.code == want, f"{cell.target} as {cell.caller}: {out.code}: {out.message}"
        if want == SUCCESS:
            assert out.output is not None
            if spec.check is not None:
                spec.check(out.output, staged)
        elif spec.intact is not None:
            spec.intact(world, staged)
    finally:
        if cell.target == "PutRegistryPolicy":
            world.registry_policy_put = True
        world.clear_registry_policies()
        if cell.target.endswith("PullThroughCacheRule"):  # ECR's quota: 50 rules per registry
            call(_acting_admin(world, staged), "DeletePullThroughCacheRule",
                 {"ecrRepositoryPrefix": _prefix(staged, "p")})
        if cell.target.endswith("RepositoryCreationTemplate"):
            call(_acting_admin(world, staged), "DeleteRepositoryCreationTemplate", {"prefix": _prefix(staged, "t")})

