"""Policy decisions: one engine interface, an embedded Rego engine and an OPA-server engine."""
