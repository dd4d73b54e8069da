"""Secrets never reach an output: `https://user:pass@host`, `?token=...` and the like are redacted in everything a
command prints, logs or raises, the libraries' lines included (MLflow, urllib3, DVC's queue logs keep them all).

MLflow prints its own "View run ... at: <tracking URI>" lines at the end of every run, password included; they are
turned off (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT) and the project logs the link without the credentials instead.
Light on purpose (no MLflow import): every command installs the guards at its start (pipeline/logs.py).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import traceback
import warnings

CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@|(?<=[?&])(token|key|secret|password|access_token|sig)=[^&\s]*",
                         re.IGNORECASE)
USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
MLFLOW_URL_LINES = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def redact(value):
    """A value fit to log: `https://user:pass@host` and `?token=...` lose their secrets (also inside lists)."""
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if not isinstance(value, str):
        return value
    return CREDENTIALS.sub(lambda m: "***@" if m.group(0).endswith("@") else f"{m.group(1)}=***", value)


def without_credentials(url: str) -> str:
    """`http://alice:pw@host/x` -> `http://host/x`: a link to open, whose login the browser asks for."""
    return USERINFO.sub("", url)


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback before any handler writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (clean := redact(message)) != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True


def redacted_excepthook(kind, error, trace) -> None:
    """A traceback (a bug's) printed as Python would, with the secrets in its messages redacted."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, error, trace))))


def redacted_showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    text = redact(warnings.formatwarning(message, category, filename, lineno, line))
    (file or sys.stderr).write(text)


def guard_outputs() -> None:
    """Install the redaction on the root logger's handlers, uncaught tracebacks and warnings, and silence MLflow's
    end-of-run URL lines (whatever the environment says: they would print the tracking URI's password)."""
    os.environ[MLFLOW_URL_LINES] = "true"
    for handler in logging.getLogger().handlers:
        if not any(isinstance(found, RedactingFilter) for found in handler.filters):
            handler.addFilter(RedactingFilter())
    sys.excepthook = redacted_excepthook
    warnings.showwarning = redacted_showwarning
