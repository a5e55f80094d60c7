"""The rebuild job: catalog images -> embeddings -> annoy forest -> quality gate -> a version to publish."""
