"""The engine: phases, the training loop, metrics, checkpoints and run outputs. Knows no CLI."""
