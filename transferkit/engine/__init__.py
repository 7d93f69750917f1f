"""The engine: one run, from a recipe to its outputs (``run.py``), in folders by job: training/,
final/, evaluation/, rundir/, runtime/, preflight/. Knows no CLI."""
