"""The docs hold no placeholder where a figure or a summary belongs (e.g. CALIBRATION-STUDY-SUMMARY, left in
docs/evaluation.md once): three or more capital words joined by dashes are a note to fill in, not text."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT

PLACEHOLDER = re.compile(r"\b[A-Z]{3,}(?:-[A-Z0-9]{2,}){2,}\b")
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "studies").rglob("*.md")])


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_placeholder_left_in_the_docs(path):
    found = PLACEHOLDER.findall(path.read_text())
    assert not found, f"{path.name}: fill in {found}"
