"""Blob storage: the BlobStore port and its drivers."""

from berth.storage.base import BlobStore, UploadWriter

__all__ = ["BlobStore", "UploadWriter"]
