"""dvc.yaml deps cannot be wrong: every project file a stage loads must be covered by one of its deps,
or `dvc status` would call stale results up to date after an edit to that file."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.lifecycle.restore_hint import RESTORE_PATHS

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("pipeline", "stages")
STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
LOADED_FILES = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps([getattr(module, "__file__", None) for module in list(sys.modules.values())]))
"""


def project_files_loaded_by(module: str) -> set[Path]:
    """Project files (relative to the repo) that importing `module` loads, in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", LOADED_FILES, module], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True)
    files = {Path(name).resolve() for name in json.loads(result.stdout.splitlines()[-1]) if name}
    return {path.relative_to(REPO_ROOT) for path in files
            if any(REPO_ROOT / package in path.parents for package in PROJECT_PACKAGES)}


def docstring_only(path: Path) -> bool:
    """A package __init__ holding nothing but a docstring cannot change a result."""
    body = ast.parse((REPO_ROOT / path).read_text()).body
    return path.name == "__init__.py" and all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                                              for node in body)


def uncovered(loaded: set[Path], deps: list[str]) -> list[str]:
    dep_paths = [Path(str(dep).rstrip("/")) for dep in deps]
    return sorted(str(path) for path in loaded if not docstring_only(path)
                  and not any(path == dep or dep in path.parents for dep in dep_paths))


@pytest.mark.slow  # a fresh interpreter per stage
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_module_a_stage_loads_is_a_dvc_dep(stage: str):
    module = STAGES[stage]["cmd"].split(" -m ")[1].split()[0]
    loaded = project_files_loaded_by(module)
    assert Path(*module.split(".")).with_suffix(".py") in loaded
    assert uncovered(loaded, STAGES[stage]["deps"]) == []


@pytest.mark.slow
def test_a_removed_dep_is_caught():
    loaded = project_files_loaded_by("stages.train")
    deps = [dep for dep in STAGES["train"]["deps"] if dep != "pipeline"] + ["pipeline/models"]
    assert "pipeline/training/losses.py" in uncovered(loaded, deps)



def test_the_restore_command_brings_back_every_output_git_holds():
    """Outputs DVC does not cache (cache: false) come back from git alone, so the restore command printed after a
    failed workspace experiment (stages/lifecycle/restore_hint.py) must name the folders they are in."""
    uncached = [path for stage in STAGES.values() for kind in ("outs", "metrics", "plots")
                for entry in stage.get(kind, []) if isinstance(entry, dict)
                for path, options in entry.items() if options and options.get("cache") is False]
    assert "reports/train/metrics.json" in uncached
    assert [path for path in uncached if Path(path).parts[0] not in RESTORE_PATHS] == []
