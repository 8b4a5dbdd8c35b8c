"""Projects: a team's space, one Kubernetes namespace each."""
