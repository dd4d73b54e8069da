"""Architectures, the normalising wrapper users get, the name registry and checkpoints."""
