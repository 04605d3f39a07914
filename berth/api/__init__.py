"""The edges: wire formats in, service calls, wire formats out."""
