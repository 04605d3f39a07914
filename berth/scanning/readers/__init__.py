"""Inventory readers, one module per ecosystem. Each is a layers.Collector: it says which paths it wants
and turns one file into a list of packages (or an OsRelease), reading at most a capped number of bytes."""

from __future__ import annotations

from berth.scanning.layers import Collector
from berth.scanning.readers import apk, dpkg, golang, java, npm, osrelease, python, rpm


def collectors() -> list[Collector]:
    """In the order they are asked: the first that wants a path reads it; Go (every executable) last."""
    return [osrelease.Reader(), dpkg.Reader(), apk.Reader(), rpm.Reader(), python.Reader(), npm.Reader(), java.Reader(),
            golang.Reader()]
