"""The gateway: the public search API in front of the detector, embedder and index services."""
