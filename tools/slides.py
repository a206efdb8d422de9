"""Lecture slides from the notebooks: one reveal.js deck per notebook, by nbconvert.

    python tools/slides.py --out artifacts/slides            # every notebooks/NN-*.ipynb
    python tools/slides.py --out /tmp/s notebooks/04-*.ipynb  # some of them
    make slides                                               # the first, into artifacts/slides

nbconvert's slides exporter cuts a notebook where cells say so in their metadata
(``slideshow.slide_type``: slide, subslide, fragment, skip, notes, or "-" to carry on). The
notebooks do not carry that metadata: this script gives it to a copy of each notebook, in
memory, from the notebook's own structure, and the files in notebooks/ are never written. A cell
that does carry ``slideshow`` metadata keeps it, so an author can place a break by hand (in
JupyterLab: the property inspector's *Slide Type*), and a notebook that changes gets new slides
the next time this runs. The rules:

* a markdown cell with a ``#`` or ``##`` heading starts a slide, one with ``###`` a subslide;
* a slide that has grown past MAX_LINES lines of source goes on in a subslide, at the next cell
  (vertical slides, under the heading's);
* the navigation cells (``<!--NAVIGATION-->``) are skipped;
* everything else carries on the current slide, which scrolls when it is long.

The decks show the code, not its output (the notebooks commit none): lecture with the notebook
open beside them, or pass --execute to run each notebook first (slow: minutes for the series).
reveal.js (with require.js and jQuery) is loaded from nbconvert's default CDNs when a deck is
opened; --local-js copies them from an npm install beside the decks (a room without internet).
Nothing generated is committed; tests/test_slides.py builds every deck and checks it.
"""

from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MAX_LINES = 30  # lines of cell source on one slide before it goes on in a subslide
NAVIGATION = "<!--NAVIGATION-->"


@dataclass
class Deck:
    notebook: Path
    html: Path
    title: str
    slides: int
    subslides: int
    skipped: int

    def __str__(self) -> str:
        return (
            f"{self.notebook.stem}: {self.slides} slides, {self.subslides} subslides, "
            f"{self.skipped} cells skipped -> {self.html}"
        )


def _heading(cell) -> int:
    """The level of the cell's first heading line (1-6), or 0 when it has none."""
    if cell.cell_type != "markdown":
        return 0
    for line in cell.source.splitlines():
        match = re.match(r"(#{1,6})\s", line)
        if match:
            return len(match[1])
    return 0


def slide_metadata(nb):
    """A copy of ``nb`` with ``slideshow.slide_type`` on every cell (kept where it was set)."""
    nb = copy.deepcopy(nb)
    lines = 0
    for cell in nb.cells:
        chosen = cell.metadata.get("slideshow", {}).get("slide_type")
        if chosen:
            kind = chosen
        elif NAVIGATION in cell.source:
            kind = "skip"
        elif _heading(cell) in (1, 2):
            kind = "slide"
        elif _heading(cell) >= 3:
            kind = "subslide"
        elif lines > MAX_LINES:
            kind = "subslide"
        else:
            kind = "-"
        if kind in ("slide", "subslide"):
            lines = 0
        if kind != "skip":
            lines += len(cell.source.splitlines())
        cell.metadata.setdefault("slideshow", {})["slide_type"] = kind
    return nb


LOCAL_JS = {  # what a deck loads -> where `npm install reveal.js@4.0.2 requirejs jquery` puts it
    "reveal.js": "reveal.js",
    "require.js": "requirejs/require.js",
    "jquery.min.js": "jquery/dist/jquery.min.js",
}


def build(
    notebooks: list[Path], out: Path, *, execute: bool = False, local_js: Path | None = None
) -> list[Deck]:
    """Write one ``<notebook>.slides.html`` per notebook into ``out``, and an index.html.

    ``local_js``: a node_modules folder holding reveal.js 4, requirejs and jquery; they are copied
    to ``out/js`` and the decks load them from there instead of from CDNs.
    """
    from nbconvert import SlidesExporter

    out.mkdir(parents=True, exist_ok=True)
    # 1280 x 720: room for the notebooks' 100-column code at a size a room can read.
    exporter = SlidesExporter(
        reveal_scroll=True, reveal_transition="none", reveal_width="1280", reveal_height="720"
    )
    if local_js is not None:
        for name, source in LOCAL_JS.items():
            if not (local_js / source).exists():
                raise SystemExit(f"--local-js: no {local_js / source} (npm install {name}?)")
            target = out / "js" / name
            if (local_js / source).is_dir():
                shutil.copytree(local_js / source, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local_js / source, target)
        exporter.reveal_url_prefix = "js/reveal.js"
        exporter.require_js_url = "js/require.js"
        exporter.jquery_url = "js/jquery.min.js"
    decks = []
    for path in notebooks:
        nb = slide_metadata(nbformat.read(path, as_version=4))
        if execute:
            from nbclient import NotebookClient

            NotebookClient(
                nb, timeout=600, resources={"metadata": {"path": str(path.parent)}}
            ).execute()
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        target = out / f"{path.stem}.slides.html"
        target.write_text(body)
        kinds = [c.metadata["slideshow"]["slide_type"] for c in nb.cells]
        title = next(
            (c.source.splitlines()[0].lstrip("# ").strip() for c in nb.cells if _heading(c) == 1),
            path.stem,
        )
        decks.append(
            Deck(
                path,
                target,
                title,
                kinds.count("slide"),
                kinds.count("subslide"),
                kinds.count("skip"),
            )
        )
    items = "\n".join(
        f'<li><a href="{d.html.name}">{html.escape(d.title)}</a> ({d.slides} slides)</li>'
        for d in decks
    )
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>RPC Lab: slides</title></head>"
        f"<body><h1>RPC Lab: lecture slides</h1><ul>\n{items}\n</ul></body></html>\n"
    )
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lecture slides from the notebooks.")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN-*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "slides")
    parser.add_argument("--execute", action="store_true", help="run each notebook first (slow)")
    parser.add_argument(
        "--local-js",
        type=Path,
        help="a node_modules folder from `npm install reveal.js@4.0.2 requirejs jquery`: the decks "
        "load these from a copy beside them instead of from CDNs (a classroom without internet)",
    )
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if not notebooks:
        print(f"no notebooks in {NOTEBOOKS}", file=sys.stderr)
        return 1
    for deck in build(notebooks, args.out, execute=args.execute, local_js=args.local_js):
        print(deck)
    print(f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
