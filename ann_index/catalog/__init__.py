"""The catalog: JSON Lines rows and their validation, kinds.json, loading, the Fashion-MNIST demo."""
