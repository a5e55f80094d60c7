"""Kubernetes manifests (k8s/): render every overlay, validate strictly, check the deploy invariants."""
