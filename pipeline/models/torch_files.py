"""torch files (.pt, .pth) read without running anything in them, and the function a refused one would call.

`torch.load(weights_only=True)` refuses a pickle that would call a function while loading. It names that function
only when it reaches it: a pickle of protocol 4 or 5 (Python's default, `pickle.dump`) it stops reading at its first
frame, after printing a warning about the protocol. The pickle's opcodes name the function without running it.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import torch

UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError)  # what torch.load raises for such files
TORCH_OWN = ("torch.", "collections.OrderedDict")  # what torch.save writes for tensors and state dicts


def load_tensors(path: Path):
    """Tensors and plain values from a torch file; anything else raises one of UNREADABLE, having run nothing."""
    with warnings.catch_warnings():  # the error that follows says what matters
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def function_called(path: Path, error: Exception) -> str | None:
    """The function the file at `path` would call when unpickled (torch refused it with `error`), if it names one."""
    named = re.search(r"GLOBAL ([\w.]+\w)", str(error))
    if named:
        return named.group(1)
    try:
        return first_foreign_global(pickle_bytes(Path(path)))
    except Exception:  # a damaged file or archive: there is no function to name
        return None


def pickle_bytes(path: Path) -> bytes:
    """The pickle itself: a file torch.save wrote is a zip archive holding it as <name>/data.pkl."""
    if not zipfile.is_zipfile(path):
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))


def first_foreign_global(data: bytes) -> str | None:
    """The first function the pickle imports that is not torch's own tensor rebuilding: GLOBAL and INST name it in
    their argument, STACK_GLOBAL (protocol 4+) takes the last two strings pushed."""
    strings: list[str] = []
    for opcode, argument, _ in pickletools.genops(io.BytesIO(data)):
        name = None
        if opcode.name in ("GLOBAL", "INST"):
            name = argument.replace(" ", ".")
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            name = f"{strings[-2]}.{strings[-1]}"
        elif isinstance(argument, str):
            strings.append(argument)
        if name and not name.startswith(TORCH_OWN):
            return name
    return None
