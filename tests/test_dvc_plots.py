"""`dvc plots show` and `dvc plots diff` pages draw offline: .dvc/config names reports/plots_template.html, which
inlines vega, vega-lite and vega-embed, so no script comes from the network (DVC's own page loads them from a CDN);
the training curves come first on the page. Real dvc commands in a git repository holding the project's files."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.project_repo import REPO_ROOT, clean_env, run

TEMPLATE = REPO_ROOT / "reports" / "plots_template.html"
CURVES = ["Loss", "Validation_mIoU_and_pixel_accuracy", "Learning_rate"]  # top-level plots in dvc.yaml, in order


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    """The project's dvc.yaml, params.yaml, .dvc/config and reports in two commits: the second with another
    training's history, for `dvc plots diff`."""
    root, env = tmp_path_factory.mktemp("plots"), clean_env()
    for name in ("dvc.yaml", "params.yaml", "reports"):
        source = REPO_ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, root / name)
    run(["git", "init", "-q"], root, env)
    run(["dvc", "init", "-q"], root, env)
    shutil.copy2(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    run(["git", "add", "-A"], root, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "first"], root, env)
    history = root / "reports" / "train" / "history.csv"
    frame = pd.read_csv(history)
    frame["train_loss"] *= 0.5
    frame.to_csv(history, index=False)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "second"], root, env)
    return root, env


def assert_drawn_offline(page: Path) -> str:
    html = page.read_text(encoding="utf8")
    assert re.findall(r"<script[^>]*\bsrc\s*=", html) == [] and "cdn.jsdelivr" not in html
    head = TEMPLATE.read_text(encoding="utf8").split("{plot_divs}")[0].replace("{refresh_tag}", "")
    assert html.startswith(head)  # the template's inlined libraries, as they are
    for library in (".vega={}", ".vegaLite={}", ".vegaEmbed="):  # each UMD build defines its global
        assert library in head
    divs = re.findall(r'<div id = "([^"]+)"', html)
    assert divs[:len(CURVES)] == CURVES, divs
    assert html.index(f'id = "{CURVES[-1]}"') < html.index('<img src="static/')  # curves first, then the figures
    return html


def test_plots_show_draws_the_curves_with_the_inlined_libraries(repo):
    root, env = repo
    run(["dvc", "plots", "show", "-o", "shown"], root, env)
    assert_drawn_offline(root / "shown" / "index.html")


def test_plots_diff_draws_both_revisions_offline(repo):
    root, env = repo
    run(["dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", "diff"], root, env)
    html = assert_drawn_offline(root / "diff" / "index.html")
    assert '"rev": "HEAD~1"' in html and '"rev": "HEAD"' in html
