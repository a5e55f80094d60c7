"""The read side: IndexReader over a verified version, the fresh overlay, category sets, self-test."""
