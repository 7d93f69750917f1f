"""The run directory on disk: its layout, files written atomically and verified, checkpoints, model
files, where commands may write, TensorBoard events."""
