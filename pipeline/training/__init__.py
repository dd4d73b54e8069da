"""Training: the run from start to finish (train.py: start.py, the epoch loop in loop.py, finish.py), what one epoch
does (trainer.py) and what it is built from (setup.py)."""
