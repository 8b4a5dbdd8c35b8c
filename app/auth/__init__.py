"""Access control: API tokens, OIDC, roles scoped to projects, and the per-route decisions."""
