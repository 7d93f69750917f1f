"""Training the two phases: the trainer, one epoch's loop, the phase policy, optimizers, the probe
on cached features, averaging, class weights, early stopping and the checkpoints kept at epoch
ends."""
