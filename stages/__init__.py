"""DVC stage entry points: each parses its arguments, reads params.yaml and calls one pipeline function."""
import os

# OpenMP threads sleep rather than spin while they wait, so trainings running at once share the cores
# (pipeline/training/threads.py). Set before any stage imports torch: libgomp reads it once, when it loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
