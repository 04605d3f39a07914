"""Scanning's domain errors; the ECR edge names them as AWS exceptions."""

from __future__ import annotations


class ScanError(Exception):
    code = "SCAN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ScanQuotaExceeded(ScanError):
    code = "LIMIT_EXCEEDED"


class ScanNotFound(ScanError):
    code = "SCAN_NOT_FOUND"


class UnsupportedImageType(ScanError):
    code = "UNSUPPORTED_IMAGE_TYPE"


class BadScanningConfiguration(ScanError):
    code = "INVALID_PARAMETER"
