"""Blob storage: the BlobStore port and its drivers."""

from berth.storage.base import BlobInfo, BlobReader, BlobStore, StorageUnavailable, UploadWriter

__all__ = ["BlobInfo", "BlobReader", "BlobStore", "StorageUnavailable", "UploadWriter"]
