"""Annoy index: catalog -> rebuild job -> gated, versioned, embedder-bound index -> IndexReader.

Plain arguments and numpy arrays only: no HTTP, no settings. Rooms, lowest first (tests/test_layout.py):
`files`, `items`, `thumbs` (what a version holds); `catalog` (rows, kinds, loading, the demo); `version`
(manifest, layout, publish, change objects); `serving` (IndexReader, fresh overlay, category sets) and `build`
(the rebuild job: `build.rebuild.rebuild`); `changes` (items apply/drain) and `shards` (sharded rebuilds);
`evaluate` (`imgsearch eval`).
"""
