"""The figures of a training and evaluation: read from the reports (figures.py), drawn with matplotlib (plots.py)."""
