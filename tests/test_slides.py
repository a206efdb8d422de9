"""Lecture slides: tools/slides.py makes a reveal.js deck of every notebook, from the notebooks'
own headings, without writing to the notebooks."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))

_spec = importlib.util.spec_from_file_location("tools_slides", ROOT / "tools" / "slides.py")
slides = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = slides  # dataclasses look their module up there
_spec.loader.exec_module(slides)


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in NOTEBOOKS}


def test_every_notebook_becomes_a_deck_and_the_notebooks_stay_untouched(tmp_path):
    before = _digests()
    decks = slides.build(NOTEBOOKS, tmp_path)
    assert _digests() == before, "building slides wrote to notebooks/"
    assert [d.notebook for d in decks] == NOTEBOOKS
    index = (tmp_path / "index.html").read_text()
    for deck in decks:
        nb = nbformat.read(deck.notebook, as_version=4)
        page = deck.html.read_text()
        headings = sum(1 for c in nb.cells if slides._heading(c) in (1, 2))
        assert deck.slides == headings >= 2, f"{deck}: one slide per # and ## heading"
        assert deck.skipped == 2, f"{deck}: the two navigation cells are skipped"
        sections = page.count("<section")
        assert sections >= deck.slides + deck.subslides, f"{deck}: {sections} <section>s"
        assert "NAVIGATION" not in page
        title = re.escape(deck.title.split("·")[-1].strip()[:20])
        assert re.search(title, page), f"{deck}: the title is not on a slide"
        assert deck.html.name in index


def test_headings_cut_slides_long_slides_go_on_below_and_authors_choices_stay():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 99 · A title\n\nWhat you will learn."),
        nbformat.v4.new_markdown_cell("<!--NAVIGATION-->\n< [prev](a.ipynb) >"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("Some prose.\n\n## A part"),
        nbformat.v4.new_code_cell("\n".join(f"line_{i} = {i}" for i in range(slides.MAX_LINES))),
        nbformat.v4.new_code_cell("after_a_long_slide = True"),
        nbformat.v4.new_markdown_cell("### A detail"),
        nbformat.v4.new_markdown_cell("A note for the speaker."),
    ]
    nb.cells[-1].metadata["slideshow"] = {"slide_type": "notes"}
    marked = slides.slide_metadata(nb)
    kinds = [c.metadata["slideshow"]["slide_type"] for c in marked.cells]
    assert kinds == ["slide", "skip", "-", "slide", "-", "subslide", "subslide", "notes"]
    assert "slideshow" not in nb.cells[0].metadata, "the notebook itself is not changed"
    again = slides.slide_metadata(marked)
    assert [c.metadata["slideshow"]["slide_type"] for c in again.cells] == kinds
