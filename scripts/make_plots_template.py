"""Build reports/plots_template.html: the page `dvc plots show` and `dvc plots diff` fill (named in .dvc/config),
with vega, vega-lite and vega-embed inlined from the npm registry so that the curves draw offline. DVC's own page
loads them from a CDN, and the template leaves out its `{scripts}` placeholder, where DVC would put those tags.
Also writes the licences of what it inlines (reports/plots_template_LICENSES.md). Needs npm and the registry:

    python scripts/make_plots_template.py            # the versions below; change them here to update
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

PACKAGES = {"vega": "6.4.0", "vega-lite": "6.5.0", "vega-embed": "7.3.0"}  # in load order: each needs the last
BUILDS = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js", "vega-embed": "build/vega-embed.min.js"}
REPORTS = Path(__file__).resolve().parents[1] / "reports"
TEMPLATE, LICENSES = REPORTS / "plots_template.html", REPORTS / "plots_template_LICENSES.md"
DVC_PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")  # DVC replaces them anywhere in the page

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots</title>
<!-- {versions}, inlined by scripts/make_plots_template.py so that the plots draw offline;
     licences: plots_template_LICENSES.md -->
@SCRIPTS@
<style>
body {font-family: sans-serif; margin: 16px;}
table {border-spacing: 15px;}
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def inline_script(source: str, name: str) -> str:
    """The minified build as an inline <script>, less its source-map comment (the map is not shipped)."""
    code = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", source)
    clashes = [text for text in ("</script", "<!--", *DVC_PLACEHOLDERS) if text in code]
    if clashes:
        raise SystemExit(f"{name}: its build contains {clashes}, which would break the page")
    return f"<script>/* {name} */\n{code.strip()}\n</script>"


def license_files(package_dir: Path) -> list[Path]:
    return sorted(path for path in package_dir.iterdir() if path.name.lower().startswith(("license", "licence")))


def copyright_line(package_dir: Path) -> str:
    for license_file in license_files(package_dir):
        for line in license_file.read_text(encoding="utf8").splitlines():
            if line.strip().lower().startswith(("copyright", "(c)")):
                return line.strip()
    return "(no copyright line in the package)"


def licences(modules: Path) -> str:
    """Full licence texts of the three inlined packages, then SPDX id and copyright line of every package npm
    installs with them: their builds bundle a subset of these (d3 modules and the like)."""
    installed = json.loads((modules / ".package-lock.json").read_text())["packages"]
    parts = ["# Licences of the JavaScript inlined in plots_template.html\n",
             "Built by `scripts/make_plots_template.py` from the npm registry.\n"]
    for name, version in PACKAGES.items():
        text = "\n".join(path.read_text(encoding="utf8") for path in license_files(modules / name))
        parts.append(f"## {name} {version} ({installed[f'node_modules/{name}']['license']}), "
                     f"`{BUILDS[name]}`\n\n```\n{text.strip()}\n```\n")
    parts.append("## Dependencies installed with them (the builds bundle a subset of these)\n\n"
                 "| package | version | licence | copyright |\n|---|---|---|---|")
    for key, entry in sorted(installed.items()):
        name = key.removeprefix("node_modules/").split("/node_modules/")[-1]
        if key and name not in PACKAGES:
            parts.append(f"| {name} | {entry['version']} | {entry.get('license', '?')} | "
                         f"{copyright_line(modules.parent / key)} |")
    return "\n".join(parts) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        subprocess.run(["npm", "install", "--no-save", "--ignore-scripts", "--no-audit", "--no-fund",
                        *(f"{name}@{version}" for name, version in PACKAGES.items())], cwd=workdir, check=True)
        modules = Path(workdir) / "node_modules"
        scripts = "\n".join(inline_script((modules / name / BUILDS[name]).read_text(encoding="utf8"), name)
                            for name in PACKAGES)
        versions = ", ".join(f"{name} {version}" for name, version in PACKAGES.items())
        TEMPLATE.write_text(PAGE.replace("{versions}", versions).replace("@SCRIPTS@", scripts), encoding="utf8")
        LICENSES.write_text(licences(modules), encoding="utf8")
    print(f"wrote {TEMPLATE} ({TEMPLATE.stat().st_size // 1024} KiB) and {LICENSES}")


if __name__ == "__main__":
    main()
