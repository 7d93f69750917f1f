"""The stages of benchmarks/gpu.py, one job per module: plan (the parts and the budget), common,
correctness (stage 1), throughput (stage 2), engine (stage 3), verdicts (targets, stage 4), report."""
