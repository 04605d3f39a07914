"""Scanning's domain errors; the ECR edge names them as AWS exceptions."""

from __future__ import annotations

from berth.errors import DomainError


class ScanError(DomainError):
    code = "SCAN_ERROR"


class ScanQuotaExceeded(ScanError):
    code = "LIMIT_EXCEEDED"


class ScanNotFound(ScanError):
    code = "SCAN_NOT_FOUND"


class UnsupportedImageType(ScanError):
    code = "UNSUPPORTED_IMAGE_TYPE"


class BadScanningConfiguration(ScanError):
    code = "INVALID_PARAMETER"
