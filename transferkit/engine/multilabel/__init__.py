"""Multi-label runs (``task = "multilabel"``): several labels per image, a sigmoid per label.

The same two phases as a single-label run, on the same backbone, head, transforms and runtime:
phase 1 a converged one-vs-rest logistic probe on cached features, phase 2 fine-tuning at the
phase's learning rate with BatchNorm in eval mode, with binary cross-entropy. The final weights
(probe, WiSE-FT interpolations, fine-tuned) are chosen on validation mean average precision, then
each label's threshold (``multilabel.threshold``). Its own flow (``run.run_multilabel``) rather
than a flag threaded through the single-label trainer: a single-label run does not change."""
