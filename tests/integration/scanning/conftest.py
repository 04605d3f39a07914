from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import trixie_debs, trixie_skopeo
from tests.support.scan_images import ScanImage, build_scan_image
from tests.support.servers import require_tool, unavailable

# apk-tools' version test data, as Debian 13 ships it for Trivy's apk version library (test_apk_versions.py)
APK_CASES_PACKAGE = "golang-github-knqyf263-go-apk-version-dev"


@pytest.fixture(scope="session")
def scan_image(tmp_path_factory: pytest.TempPathFactory) -> ScanImage:
    """The real-package image, built once per session."""
    work: Path = tmp_path_factory.mktemp("scan-image")
    return build_scan_image(work / "layout", work)


@pytest.fixture(scope="session")
def trixie_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One root with every Debian 13 package the scanning tests run or read (one `apt-get update` per session):
    Debian 13's skopeo and its libraries (test_signing.py), apk-tools' version data (test_apk_versions.py)."""
    require_tool("apt-get", "dpkg-deb")
    try:
        return trixie_debs.unpack(tmp_path_factory.mktemp("trixie") / "root",
                                  (*trixie_skopeo.PACKAGES, APK_CASES_PACKAGE))
    except (subprocess.SubprocessError, OSError) as e:
        unavailable(f"Debian 13's packages could not be fetched: {e}")
        raise
