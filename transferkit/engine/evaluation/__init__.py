"""Predictions and their figures: a model's probabilities on an image set, metrics, the run's
prediction cache, plots."""
