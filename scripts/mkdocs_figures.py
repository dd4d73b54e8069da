"""MkDocs hook: the committed figures of reports/figures/ become part of the site as figures/<name>, so the manual
shows the ones the last `dvc repro` drew, not copies that would go stale."""
from pathlib import Path

from mkdocs.structure.files import File

FIGURES = Path(__file__).resolve().parents[1] / "reports" / "figures"


def on_files(files, config):
    for path in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"figures/{path.name}", abs_src_path=str(path)))
    return files
