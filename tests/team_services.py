"""The services a team runs, started for real on 127.0.0.1 (free ports) for as long as a `with` block lasts:
PostgreSQL from the distribution's binaries, moto's standalone S3 server, and `mlflow server` with basic auth,
a PostgreSQL backend store and artifacts proxied to an S3 bucket.

    with Postgres() as db, S3Server(logs) as s3, MlflowServer(db, s3, "mlflow", logs) as server:
        server.create_user("alice", "password-of-alice")
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

S3_KEYS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1"}
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready, what: str, log: Path | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s\n{tail}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def postgres_binary(name: str) -> str:
    """`initdb`/`pg_ctl` on PATH, or in Debian's versioned folder (the postgresql package keeps them off PATH)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return found


class Process:
    """A server subprocess in its own session, so stopping it also stops the workers it forked."""

    def __init__(self, command: list[str], log: Path, env: dict | None = None):
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Postgres:
    """A throwaway cluster: initdb into a temp folder, trust auth, listening on 127.0.0.1 only.
    initdb refuses to run as root, so as root the cluster belongs to `nobody`."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        self.as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []

    def uri(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.uri("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self.as_user, *command], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def __enter__(self) -> Postgres:
        if self.as_user:
            shutil.chown(self.dir, "nobody")
        self.dir.chmod(0o755)
        self._run(postgres_binary("initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8")
        self._run(postgres_binary("pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir}", "start")
        return self

    def __exit__(self, *exc_info) -> None:
        self._run(postgres_binary("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class S3Server:
    """moto's standalone S3 server: any S3-compatible store would do."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log_dir) / "s3.log"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def __enter__(self) -> S3Server:
        self.server = Process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                              self.log)
        wait_until(lambda: answers(self.url + "/moto-api/"), "moto S3 server", self.log)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.stop()


class MlflowServer:
    """`mlflow server --app-name basic-auth`: runs and registry in PostgreSQL, artifacts proxied to
    s3://<bucket>. Only the server holds the bucket's keys; clients authenticate with a user and password."""

    def __init__(self, postgres: Postgres, s3: S3Server, bucket: str, log_dir: Path):
        self.postgres, self.s3, self.bucket, self.log_dir = postgres, s3, bucket, Path(log_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MlflowServer:
        self.s3.client().create_bucket(Bucket=self.bucket)
        auth_ini = self.log_dir / "basic_auth.ini"
        auth_ini.write_text(
            "[mlflow]\ndefault_permission = EDIT\n"
            f"database_uri = {self.postgres.create_database('mlflow_auth')}\n"
            f"admin_username = {ADMIN}\nadmin_password = {ADMIN_PASSWORD}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "auth_cache_ttl_seconds = 60\n")  # one PBKDF2 check per login a minute, not per request
        env = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "AWS_"))}
        env.update(S3_KEYS, MLFLOW_S3_ENDPOINT_URL=self.s3.url, MLFLOW_AUTH_CONFIG_PATH=str(auth_ini),
                   MLFLOW_FLASK_SERVER_SECRET_KEY="test-secret-key", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        log = self.log_dir / "mlflow-server.log"
        self.server = Process([sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
                               "--backend-store-uri", self.postgres.create_database("mlflow"),
                               "--artifacts-destination", f"s3://{self.bucket}", "--host", "127.0.0.1",
                               "--port", str(self.port), "--workers", "2"], log, env)
        wait_until(lambda: answers(self.url + "/health"), "mlflow server", log, timeout=180)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.stop()

    def create_user(self, username: str, password: str) -> None:
        """What an admin does once per team member (the REST call behind `AuthServiceClient.create_user`)."""
        self.as_admin("/api/2.0/mlflow/users/create", {"username": username, "password": password})

    def as_admin(self, path: str, body: dict) -> None:
        """A POST to the server's REST API with the admin's login (creating users, models, granting rights)."""
        import requests

        response = requests.post(self.url + path, auth=(ADMIN, ADMIN_PASSWORD), json=body, timeout=30)
        response.raise_for_status()
