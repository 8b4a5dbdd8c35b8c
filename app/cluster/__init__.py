"""Cluster backends (SPEC §7): a real Kubernetes API server, or the embedded simulation."""
