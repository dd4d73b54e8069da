"""Scoring a model on a labelled split: the confusion-matrix counters and the loop that feeds them, shared by
validation during training and by the evaluate stage."""
