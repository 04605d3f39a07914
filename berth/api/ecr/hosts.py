"""The registry host a client can use for a repository: what repositoryUri and proxyEndpoint carry.

- A call on an ECR-style host (`api.ecr.<region>.<domain>`, `<id>.dkr.ecr.<region>.<domain>`) gets
  `<account>.dkr.ecr.<region>.<domain>` with that request's port: the operator has made those names
  resolve (DNS, hosts entries), as for real ECR.
- A call on a plain host (`127.0.0.1:5000`, `registry.internal:5000`) about the default account and
  region gets that same host: it selects them, and the client already reaches it.
- Anything else gets `<account>.dkr.ecr.<region>.<registry domain>`, with the request's port when it
  is not the scheme's default (such names need a hosts entry or DNS; see the README).
"""

from __future__ import annotations

import re

_ECR_API = re.compile(r"(?:api\.ecr|ecr)\.([a-z0-9-]+)\.(.+?)(:\d+)?")
_ECR_DKR = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.(.+?)(:\d+)?")


def _port(host: str, secure: bool) -> str:
    tail = host.rsplit("]", 1)[-1]
    port = tail.rsplit(":", 1)[1] if ":" in tail else ""
    return "" if port in ("", "443" if secure else "80") else f":{port}"


def registry_host(request_host: str, secure: bool, account: str, region: str, domain: str,
                  default_account: str, default_region: str) -> str:
    host = request_host.strip().lower() or "localhost"
    dkr, api = _ECR_DKR.fullmatch(host), _ECR_API.fullmatch(host)
    if dkr is not None or api is not None:
        suffix = dkr.group(3) if dkr is not None else api.group(2)  # type: ignore[union-attr]
        return f"{account}.dkr.ecr.{region}.{suffix}{_port(host, secure)}"
    if (account, region) == (default_account, default_region):
        return host if _port(host, secure) else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return f"{account}.dkr.ecr.{region}.{domain}{_port(host, secure)}"
