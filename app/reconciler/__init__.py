"""The reconciler: applies workloads to the cluster and derives their status from what it sees."""
