"""Lifecycle policies (grammar, pure evaluation, runs), the archive storage class, and garbage collection."""
