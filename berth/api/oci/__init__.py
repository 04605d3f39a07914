"""The OCI Distribution API v1.1 face (/v2/)."""
