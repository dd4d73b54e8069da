#!/usr/bin/env bash
# Create an MLflow user on the team server, as the admin: deploy/create-user.sh alice
# Reads MLFLOW_TRACKING_URI and the admin's MLFLOW_TRACKING_USERNAME/PASSWORD from the environment and asks
# for the new user's password (at least 12 characters), which is never written anywhere.
set -euo pipefail
user="${1:?usage: deploy/create-user.sh USERNAME}"
read -r -s -p "password for $user: " password; echo
USER_NAME="$user" USER_PASSWORD="$password" python - <<'PY'
import os
from mlflow.server import get_app_client

client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
client.create_user(username=os.environ["USER_NAME"], password=os.environ["USER_PASSWORD"])
print(f"created MLflow user {os.environ['USER_NAME']}")
PY
