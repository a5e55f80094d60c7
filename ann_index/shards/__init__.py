"""Sharded rebuilds: N pods embed a share of the catalog each; one merge builds and publishes."""
