"""Runplane: an open control plane for ML workloads on Kubernetes."""
