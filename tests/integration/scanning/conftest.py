from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scan_images import ScanImage, build_scan_image


@pytest.fixture(scope="session")
def scan_image(tmp_path_factory: pytest.TempPathFactory) -> ScanImage:
    """The real-package image, built once per session."""
    work: Path = tmp_path_factory.mktemp("scan-image")
    return build_scan_image(work / "layout", work)
