"""Class names as figures and overlays show them: cut to a label's length. A name can be as long as its source
allows (a dataset's classes.txt, a model file), and five names of 100,000 characters drew a 500,033-pixel-wide
overlay; the full names stay in the JSON reports and the model card."""
from __future__ import annotations

MAX_SHOWN = 40  # characters of a name on a legend, an axis or an overlay (ADE20K's longest name has 19)


def short_name(name: str) -> str:
    return name if len(name) <= MAX_SHOWN else name[:MAX_SHOWN - 3] + "..."
