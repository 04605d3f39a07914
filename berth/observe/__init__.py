"""Operability: the access log, request ids and Prometheus metrics (issue 11). Wired in berth/app.py."""
