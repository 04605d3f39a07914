"""Replication between regions, accounts and deployments, and the pull-through cache."""
