"""Catalog changes between rebuilds: a changes file validated, its upserts embedded, written as one change
object beside the served version (`imgsearch items apply`, `imgsearch items drain`)."""
