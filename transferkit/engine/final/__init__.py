"""The end of a run: which weights it keeps (train.final, cross-fitting), and how far to trust them
(calibration, rejection)."""
