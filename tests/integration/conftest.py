"""Images built once per session with the real tools, reused by every test and both backends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.aws import IAM_ADMIN_KEY, IAM_ADMIN_SECRET
from tests.support.images import BuildahImages, ContainerTool, UmociImages, add_index, build_umoci_image
from tests.support.servers import BerthServer, require_tool

# the regions the identity suites sign for (test_identity_security: a second served region is its own namespace)
IAM_REGIONS = "us-east-1,eu-west-1"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def identity_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """One `berth serve --auth iam` per backend with the admin key IAM_ADMIN_KEY, shared by the identity suites
    (test_iam_depth, test_identity_saml, test_identity_security, test_web_identity, test_secrets_manager;
    test_credential_helper and test_edges take the SQLite one only); each names its own users, roles, providers,
    secrets and repositories. `jwks_dir` is its
    BERTH_OIDC_JWKS_DIR (read per request)."""
    base = tmp_path_factory.mktemp("identity")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    jwks_dir = base / "jwks"
    jwks_dir.mkdir()
    env = {"BERTH_ADMIN_ACCESS_KEY_ID": IAM_ADMIN_KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": IAM_ADMIN_SECRET,
           "BERTH_REGIONS": IAM_REGIONS, "BERTH_OIDC_JWKS_DIR": str(jwks_dir)}
    srv = BerthServer(base / "data", database_url=url, args=["--auth", "iam"], env=env).start()
    srv.settle = 2.0 if url else 0.0  # type: ignore[attr-defined]  # PostgreSQL: caches trust for up to a second
    srv.jwks_dir = jwks_dir  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def umoci_images(tmp_path_factory: pytest.TempPathFactory) -> UmociImages:
    require_tool("umoci")
    work = tmp_path_factory.mktemp("umoci")
    layout_dir = work / "layout"
    app = build_umoci_image(
        layout_dir, work, "app",
        [
            {"etc/app.conf": b"greeting=hello\n", "usr/share/app/data.bin": os.urandom(1024 * 1024),
             "usr/share/app/keep.txt": b"kept across layers\n"},
            {"usr/bin/hello": b"#!/bin/sh\necho hello from berth\n", "etc/app.conf": b"greeting=bonjour\n"},
            {"usr/share/app/data.bin": None, "srv/README": b"third layer\n"},
        ],
        config_args=["--config.cmd", "/usr/bin/hello", "--config.entrypoint", "/bin/sh",
                     "--config.env", "GREETING=bonjour", "--config.workingdir", "/srv",
                     "--config.label", "org.example.built-by=umoci", "--config.user", "1000:1000"],
    )
    amd64 = build_umoci_image(layout_dir, work, "tiny-amd64", [{"arch": b"amd64\n"}], arch="amd64",
                              config_args=["--config.cmd", "/arch"])
    arm64 = build_umoci_image(layout_dir, work, "tiny-arm64", [{"arch": b"arm64\n"}], arch="arm64",
                              config_args=["--config.cmd", "/arch"])
    index_digest = add_index(app.layout, "multi", [amd64, arm64])
    return UmociImages(app.layout, app, amd64, arm64, "multi", index_digest)


@pytest.fixture(scope="session")
def buildah_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildahImages]:
    require_tool("buildah")
    base = tmp_path_factory.mktemp("buildah")
    buildah = ContainerTool("buildah", base / "store")
    src = base / "src"
    src.mkdir()

    def commit(name: str, arch: str, content: bytes) -> None:
        (src / arch).write_bytes(content)
        ctr = buildah("from", "--arch", arch, "scratch")
        buildah("copy", ctr, src / arch, "/payload.txt")
        buildah("config", "--arch", arch, "--os", "linux", "--cmd", "/payload.txt",
                "--label", f"org.example.arch={arch}", ctr)
        buildah("commit", "-q", ctr, name)
        buildah("rm", ctr)

    single_file = b"built by buildah from scratch\n" + os.urandom(4096).hex().encode()
    commit("localhost/berth-single", "amd64", single_file)
    arch_files = {arch: f"payload for {arch}\n".encode() for arch in ("amd64", "arm64")}
    buildah("manifest", "create", "localhost/berth-multi")
    for arch, content in arch_files.items():
        commit(f"localhost/berth-{arch}", arch, content)
        buildah("manifest", "add", "localhost/berth-multi", f"localhost/berth-{arch}")
    try:
        yield BuildahImages(buildah, "localhost/berth-single", single_file, "localhost/berth-multi", arch_files)
    finally:
        buildah.close()


@pytest.fixture
def container_tool(tmp_path: Path) -> Iterator[Callable[[str, str], ContainerTool]]:
    """Make buildah/podman instances with private storage under this test's tmp_path: make("podman", "first")."""
    made: list[ContainerTool] = []

    def make(tool: str, name: str) -> ContainerTool:
        require_tool(tool)
        made.append(ContainerTool(tool, tmp_path / name))
        return made[-1]

    try:
        yield make
    finally:
        for t in made:
            t.close()
