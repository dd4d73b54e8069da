-- MLflow keeps its users apart from the tracking data: a second database in the same server
CREATE DATABASE mlflow_auth OWNER mlflow;
