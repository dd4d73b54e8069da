"""The manual cannot rot: its reference pages are what the code says, and the site builds with every link whole."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_reference_pages_are_what_the_script_generates_from_the_code():
    result = subprocess.run([sys.executable, "scripts/make_reference.py", "--check"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_setting_of_the_schema_is_on_the_settings_page():
    from pipeline.config import Params, flatten

    page = (REPO / "docs/reference/settings.md").read_text()
    assert all(f"| `{key}` |" in page for key in flatten(Params()))


def test_the_site_builds_in_strict_mode(tmp_path):
    """A broken link, a missing anchor or a page left out of the nav fails the build (mkdocs.yml: strict)."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "reference/settings/index.html").is_file()
    assert (tmp_path / "figures/sample_predictions.png").is_file()


def test_the_readme_is_a_front_door():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
