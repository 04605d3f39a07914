"""Secrets Manager secrets (the credentials of pull-through upstreams), encrypted at rest."""
