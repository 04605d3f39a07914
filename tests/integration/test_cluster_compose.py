"""compose.yaml as a real Compose implementation resolves it: `docker-compose config` (Debian's docker-compose
1.29, which validates against the Compose file schema without a daemon; no engine runs here, see
TESTING.md). The resolved services must fit together: ports, volumes, healthchecks, dependencies, and the
environment (every BERTH_ value a setting Berth accepts; the same database, store and master key for every
Berth process; the credentials Berth uses are the ones PostgreSQL and the object store are given)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from berth.config import Settings
from tests.support.servers import require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BERTH = ("berth-a", "berth-b", "worker")


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    require_tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(["docker-compose", "--no-ansi", "-f", str(path), "--project-directory", str(path.parent),
                           "config"], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    done = compose_config(ROOT / "compose.yaml")
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert isinstance(doc, dict)
    return doc


def image_env() -> dict[str, str]:
    """The ENV of the Containerfile (what every container starts with)."""
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    return {**image_env(), **{k: str(v) for k, v in svc.get("environment", {}).items()}}


def test_the_file_is_valid_compose_and_the_validator_refuses_a_broken_one(resolved: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    assert set(resolved["services"]) == {"postgres", "minio", "bucket", "berth-a", "berth-b", "worker"}
    broken = tmp_path / "compose.yaml"  # the check can fail: an unknown service key is refused
    broken.write_text((ROOT / "compose.yaml").read_text().replace("    command: [\"worker\"]",
                                                                  "    command: [\"worker\"]\n    replica: 2"))
    shutil.copy(ROOT / "Containerfile", tmp_path / "Containerfile")
    done = compose_config(broken)
    assert done.returncode != 0 and "replica" in done.stderr, (done.returncode, done.stderr)


def test_every_berth_process_has_valid_settings_on_the_same_database_store_and_master_key(
        resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    settings = {}
    for name in BERTH:
        env = env_of(services[name])
        settings[name] = s = Settings.from_env({k: v for k, v in env.items() if k.startswith("BERTH_")})
        assert s.uses_postgres and s.auth == "iam" and s.storage_url.startswith("s3://"), name
        assert s.host == "0.0.0.0", name  # reachable through the published port
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"], name
        assert services[name]["image"] == "localhost/berth:latest" and services[name]["build"]["context"], name
    for field in ("database_url", "storage_url", "master_key_file", "admin_access_key_id"):
        assert len({getattr(s, field) for s in settings.values()}) == 1, field
    assert settings["berth-a"].job_workers == settings["berth-b"].job_workers == 0  # jobs run in the worker
    assert settings["worker"].job_workers > 0
    assert services["worker"]["command"] == ["worker"]
    assert services["berth-a"]["command"] == services["berth-b"]["command"] == ["serve"]

    # the credentials Berth is given are those PostgreSQL and MinIO are set up with
    pg = services["postgres"]["environment"]
    db = urlsplit(settings["worker"].database_url)
    assert (db.username, db.password, db.hostname, db.port, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], "postgres", 5432, pg["POSTGRES_DB"])
    minio = services["minio"]["environment"]
    env = env_of(services["worker"])
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (minio["MINIO_ROOT_USER"],
                                                                        minio["MINIO_ROOT_PASSWORD"])
    store = urlsplit(settings["worker"].storage_url)
    endpoint = urlsplit(parse_qs(store.query)["endpoint"][0])
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    bucket_cmd = " ".join(services["bucket"]["entrypoint"])
    assert f"s3/{store.hostname}" in bucket_cmd and f"{minio['MINIO_ROOT_USER']} {minio['MINIO_ROOT_PASSWORD']}" \
        in bucket_cmd  # the bucket service creates the bucket Berth stores in


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes (docker-compose prints them as SOURCE:TARGET:MODE)."""
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v["source"], v["target"]
        out[target] = source
    return out


def test_volumes_keep_the_data_and_share_one_master_key(resolved: dict[str, Any]) -> None:
    services, volumes = resolved["services"], resolved["volumes"]
    assert _mounts(services["postgres"]) == {"/var/lib/postgresql/data": "postgres"}
    assert _mounts(services["minio"]) == {"/data": "minio"}
    assert services["minio"]["command"] == "server /data"
    for name in BERTH:
        key = Path(Settings.from_env({k: v for k, v in env_of(services[name]).items()
                                      if k.startswith("BERTH_")}).master_key_file)
        mounts = _mounts(services[name])
        assert mounts.get(str(key.parent)) == "berth-keys", (name, mounts)  # one key for every process
    assert {"postgres", "minio", "berth-keys"} <= set(volumes)
    # a named volume starts out as the image's directory: the Containerfile makes it the berth user's
    text = (ROOT / "Containerfile").read_text()
    assert "/var/lib/berth-keys" in text and re.search(r"chown 10001 [^\n]*/var/lib/berth-keys", text)


def test_ports_healthchecks_and_start_order(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    port = int(image_env()["BERTH_PORT"])

    def published(name: str) -> list[tuple[int, int]]:
        return [(int(p["published"]), int(p["target"])) for p in services[name].get("ports", [])]

    assert published("berth-a") == [(5000, port)] and published("berth-b") == [(5001, port)]
    assert published("worker") == [] and published("postgres") == [] and published("minio") == []
    for name in ("berth-a", "berth-b"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python3", test  # the image's venv python (no curl in it)
        assert f"http://127.0.0.1:{port}/readyz" in test[-1], test
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for name in BERTH:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["bucket"]["condition"] == "service_completed_successfully", name
        assert services[name]["restart"] == "unless-stopped", name
    assert "minio" in services["bucket"]["depends_on"]


def test_every_kubernetes_pod_mounts_the_one_master_key_secret() -> None:
    """The same check for deploy/k8s (no tool: the documents are validated in tests/unit/test_deploy_files.py):
    nodes and workers read BERTH_MASTER_KEY_FILE from one Secret, which the manifests never create (so that
    `kubectl apply -k` cannot replace a deployment's key)."""
    docs = [d for p in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
            if d is not None and p.name != "kustomization.yaml"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    key = Path(config["BERTH_MASTER_KEY_FILE"])
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        container = spec["containers"][0]
        assert any(ref.get("configMapRef", {}).get("name") == d2["metadata"]["name"]
                   for ref in container["envFrom"] for d2 in docs if d2["kind"] == "ConfigMap")
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(key.parent))
        assert mount.get("readOnly") is True
        assert volumes[mount["name"]]["secret"]["secretName"] == "berth-master-key", d["metadata"]["name"]
    assert not any(d["kind"] == "Secret" and d["metadata"]["name"] == "berth-master-key" for d in docs)
