"""Blob storage: the BlobStore port and its drivers."""

from berth.storage.base import BlobInfo, BlobReader, BlobStore, UploadWriter

__all__ = ["BlobInfo", "BlobReader", "BlobStore", "UploadWriter"]
