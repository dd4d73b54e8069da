"""Reproducible semantic-segmentation pipeline: DVC stages over small, single-purpose modules."""
