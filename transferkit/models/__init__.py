"""Models: the backbone contract, weights resolution, the classifier head and freezing policies."""
