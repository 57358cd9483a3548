"""ACME's shared concurrency policy for corral (data only: policy.toml and rules.yaml)."""
