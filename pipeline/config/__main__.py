"""`python -m pipeline.config`: the command lives in cli.py, so that importing the package does not run it."""
from pipeline.config.cli import main

main()
