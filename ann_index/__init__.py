"""Annoy index: catalog -> rebuild job -> gated, versioned, embedder-bound index -> IndexReader.

Plain arguments and numpy arrays only: no HTTP, no settings. Entry points: `rebuild.rebuild` (the job),
`publish.read_current` / `publish.sync_version` (pull a version), `reader.IndexReader` (serve it).
"""
