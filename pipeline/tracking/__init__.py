"""MLflow, split by job: the store (store.py), the training run (run.py), its logged and registered model
(logged_model.py, registry.py), and later stages' results on that run (attach.py)."""
