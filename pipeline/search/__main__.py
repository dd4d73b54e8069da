"""python -m pipeline.search: run trials of a study in this clone, show its best, or register it."""
from pipeline.search.cli import main

if __name__ == "__main__":
    main()
