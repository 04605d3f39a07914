"""The deployment files people use: deploy/k8s/*.yaml and compose.yaml parse, and every Kubernetes document
is a valid object of its kind by the official client's models (the OpenAPI types, required fields, and no
field the API does not know: a round trip through the model must give the document back unchanged).
The settings they pass are settings Berth knows, with values it accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from berth.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MODELS = {("v1", "Namespace"): "V1Namespace", ("v1", "ConfigMap"): "V1ConfigMap", ("v1", "Secret"): "V1Secret",
          ("v1", "Service"): "V1Service", ("apps/v1", "Deployment"): "V1Deployment"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


DOCS = _documents()


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in DOCS if d["kind"] == kind]


def _strip_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nones(v) for v in value]
    return value


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[f"{n}:{d.get('kind')}" for n, d in DOCS])
def test_every_kubernetes_document_is_a_valid_object_of_its_kind(name: str, doc: dict[str, Any]) -> None:
    from kubernetes.client import ApiClient

    model = MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    assert model is not None, f"{name}: unexpected {doc.get('apiVersion')}/{doc.get('kind')}"
    assert doc["metadata"]["name"]
    client = ApiClient()
    obj = client._ApiClient__deserialize(doc, model)  # type: ignore[attr-defined]  # required fields checked
    back = _strip_nones(client.sanitize_for_serialization(obj))
    assert back == doc, f"{name}: fields the {doc['kind']} API does not know (or of the wrong type)"


def test_the_kustomization_lists_every_file() -> None:
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(k["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _env_of(containers_env_from: list[dict[str, Any]], extra: list[dict[str, Any]]) -> dict[str, str]:
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in _by_kind("ConfigMap")}
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in _by_kind("Secret")}
    env: dict[str, str] = {}
    for ref in containers_env_from:
        if "configMapRef" in ref:
            env.update(maps[ref["configMapRef"]["name"]])
        if "secretRef" in ref:
            env.update(secrets[ref["secretRef"]["name"]])
    env.update({e["name"]: e["value"] for e in extra})
    return env


def test_nodes_workers_service_and_probes_fit_together() -> None:
    deployments = {d["metadata"]["name"]: d for d in _by_kind("Deployment")}
    nodes, workers = deployments["berth"], deployments["berth-worker"]
    for d in (nodes, workers):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
        container = d["spec"]["template"]["spec"]["containers"][0]
        env = _env_of(container.get("envFrom", []), container.get("env", []))
        settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("BERTH_")})  # known, valid
        assert settings.uses_postgres and settings.auth == "iam"
    node = nodes["spec"]["template"]["spec"]["containers"][0]
    assert node["args"] == ["serve"] and workers["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert node["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in node["ports"]}
    service = _by_kind("Service")[0]
    assert service["spec"]["selector"].items() <= nodes["spec"]["template"]["metadata"]["labels"].items()
    assert not service["spec"]["selector"].items() <= workers["spec"]["template"]["metadata"]["labels"].items()
    for p in service["spec"]["ports"]:
        assert p["targetPort"] in ports
    env = _env_of(node["envFrom"], [])
    assert int(env["BERTH_PORT"]) == ports["http"]


def test_compose_file_wires_berth_to_postgresql_and_an_s3_store() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "berth-a", "berth-b", "worker"} <= services.keys()
    for name in ("berth-a", "berth-b", "worker"):
        svc = services[name]
        env = {k: str(v) for k, v in svc["environment"].items() if k.startswith("BERTH_")}
        s = Settings.from_env(env)
        assert s.uses_postgres and s.storage_url.startswith("s3://")
        assert "@postgres:" in s.database_url and "minio:9000" in s.storage_url
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["command"] == ["worker"]
    assert services["berth-a"]["healthcheck"]["test"][-1].endswith("/readyz')")
