"""Repositories, blobs, uploads, manifests, tags and referrers: the registry's rules."""
