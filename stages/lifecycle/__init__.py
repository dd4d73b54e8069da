"""What every stage shares: how it runs (run.py), how it stops (signals.py), and what a failed workspace
experiment says last (restore_hint.py)."""
