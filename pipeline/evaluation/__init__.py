"""The evaluate stage: the chosen checkpoint scored on the test split at each image's own size."""
