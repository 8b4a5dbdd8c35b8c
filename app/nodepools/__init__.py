"""Node pools: the cluster's nodes grouped by their node-pool label, as the reconciler saw them."""
