"""Berth: a self-hosted container registry, wire-compatible with AWS ECR."""

__version__ = "0.1.0"
