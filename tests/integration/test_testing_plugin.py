"""berth.testing, the pytest plugin users get with the package: a user's own test suite, run by a real
pytest that finds the plugin through the `pytest11` entry point declared in pyproject.toml (no -p, no
conftest), gets a running Berth, drives it with boto3, the aws CLI (AWS_ENDPOINT_URL only) and skopeo,
and leaves nothing running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.servers import require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

USER_TEST = '''
import json, os, shutil, subprocess, sys
from pathlib import Path


def test_my_deploy_script(berth_registry, berth_ecr, tmp_path):
    Path(os.environ["URL_FILE"]).write_text(berth_registry.url)
    repo = berth_ecr.create_repository(repositoryName="team/app")["repository"]
    assert repo["repositoryUri"] == berth_registry.registry_host + "/team/app"
    aws = str(Path(sys.executable).with_name("aws"))
    out = subprocess.run([aws, "ecr", "describe-repositories", "--output", "json"],
                         env={**os.environ, **berth_registry.aws_env()}, capture_output=True, text=True, check=True)
    assert [r["repositoryName"] for r in json.loads(out.stdout)["repositories"]] == ["team/app"]
    layout = Path(os.environ["LAYOUT"])
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                    "AWS:" + berth_registry.login_password(), f"oci:{layout}:v1",
                    f"docker://{berth_registry.registry_host}/team/app:v1"], check=True, capture_output=True)
    images = berth_ecr.describe_images(repositoryName="team/app")["imageDetails"]
    assert images[0]["imageTags"] == ["v1"]
    assert berth_registry.client("sts").get_caller_identity()["Arn"].endswith(":user/admin")
    assert berth_registry.secret_access_key not in berth_registry.read_log()


def test_same_server_for_the_session(berth_registry):
    assert Path(os.environ["URL_FILE"]).read_text() == berth_registry.url
'''


def _dist_info(site: Path) -> None:
    """What `pip install berth` writes: the dist-info with the entry points pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = site / f"berth-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: berth\nVersion: {project['version']}\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_users_suite_gets_a_real_berth(tmp_path: Path) -> None:
    require_tool("skopeo", "umoci")
    site, suite = tmp_path / "site", tmp_path / "suite"
    _dist_info(site)
    suite.mkdir()
    (suite / "test_user.py").write_text(USER_TEST)
    layout = tmp_path / "layout"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:v1"], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "AWS_", "PYTEST_"))}
    env.update(PYTHONPATH=f"{site}{os.pathsep}{ROOT}", URL_FILE=str(tmp_path / "url"), LAYOUT=str(layout))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)], cwd=suite,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout
    port = int((tmp_path / "url").read_text().rsplit(":", 1)[1])
    with socket.socket() as s:  # the fixture stopped its server
        assert s.connect_ex(("127.0.0.1", port)) != 0
