"""Open a notebook in JupyterLab, Run All as a learner would, and record what the page shows."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browser_env import PlaywrightError
from lab_server import LabServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front, never a hidden tab
VIEWPORT = {"width": 1280, "height": 800}
MAX_SCREENSHOT_HEIGHT = 15000  # px: Chromium refuses captures much taller than 16384
KERNEL_TIMEOUT = 90.0  # s: page loaded and kernel idle
RUN_TIMEOUT = 180.0  # s: Run All, every code cell finished
UI_TIMEOUT = 30.0  # s: a menu, a save, a widget drawn
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # colour codes in tracebacks
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ERROR_MIME = "application/vnd.jupyter.error"

# JavaScript run in the page. Each takes the PANEL selector (and more) as its argument.
_KERNEL_IDLE_JS = """
(panel) => {
  const p = document.querySelector(panel);
  const status = p && p.querySelector('.jp-Notebook-ExecutionIndicator');
  const kernel = p && p.querySelector('.jp-Toolbar-kernelName');
  // Before a kernel exists the indicator also says idle, next to "No Kernel".
  return !!(status && kernel && status.dataset.status === 'idle'
            && kernel.textContent.trim() !== '' && !/No Kernel/.test(kernel.textContent));
}
"""
_PROMPTS_JS = """
(panel) => [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')]
  .map((e) => e.textContent.trim())
"""
# Done: every non-empty code cell shows a number; or an error stopped Run All (JupyterLab then
# leaves the cells after it unrun) and no cell is running or queued any more.
_RUN_DONE_JS = """
([panel, mask, errorMime]) => {
  const prompts = [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')]
    .map((e) => e.textContent.trim());
  if (prompts.length !== mask.length) return false;
  const numbered = prompts.map((t) => /^\\[\\d+\\]/.test(t));
  if (mask.every((nonEmpty, i) => !nonEmpty || numbered[i])) return true;
  const busy = prompts.some((t) => t.includes('*'));
  const outputs = [...document.querySelectorAll(panel + ' .jp-OutputArea-output')];
  const failed = outputs.some((o) => o.dataset.mimeType === errorMime
      || (o.dataset.mimeType === 'application/vnd.jupyter.stderr'
          && o.textContent.includes('Traceback (most recent call last)')));
  return failed && !busy && numbered.some(Boolean);
}
"""
# How much taller than the window the notebook is; scrolls it to the top for the screenshot.
_OVERFLOW_JS = """
(panel) => {
  const s = document.querySelector(panel + ' .jp-WindowedPanel-outer');
  const cells = document.querySelectorAll(panel + ' .jp-Notebook-cell');
  if (!s || !cells.length) return 0;
  const last = cells[cells.length - 1].getBoundingClientRect().bottom;
  const needed = last - s.getBoundingClientRect().top + s.scrollTop + 24;
  s.scrollTop = 0;
  return Math.max(0, Math.ceil(needed - s.clientHeight));
}
"""
_FITS_JS = """
([panel, wanted]) => {
  const s = document.querySelector(panel + ' .jp-WindowedPanel-outer');
  if (!s) return true;
  s.scrollTop = 0;
  return s.clientHeight >= wanted;
}
"""
# Top-level widget outputs of each cell, and whether each is drawn without error.
WIDGETS_JS = """
(panel) => {
  const outputs = [...document.querySelectorAll(
    panel + ' .jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')];
  const cells = [...document.querySelectorAll(panel + ' .jp-Notebook-cell')];
  const found = [];
  for (const out of outputs) {
    const widget = out.classList.contains('jupyter-widgets') ? out :
    out.querySelector('.jupyter-widgets');
    const text = out.innerText || '';
    const broken = !!out.querySelector('.jupyter-widgets-error-widget')
        || /Error displaying widget|Error rendering widget|javascript error/.test(text);
    if (!widget && !broken) continue;
    const box = widget ? widget.getBoundingClientRect() : {width: 0, height: 0};
    const cell = cells.findIndex((c) => c.contains(out));
    found.push({cell: cell + 1, drawn: box.width > 0 && box.height > 0, broken,
                loading: /Loading widget/.test(text), text: text.slice(0, 300)});
  }
  return found;
}
"""


@dataclass
class NotebookRun:
    """A notebook open in JupyterLab after Run All: the page, and what the run produced."""

    name: str
    page: Page
    code_cells: list[dict[str, Any]]  # {"index": notebook cell number (1-based), "source": ...}
    prompts: list[str]  # input prompt text of each code cell, after the run
    errors: list[str]  # each error output: where, and its text
    widget_views: dict[int, int]  # notebook cell number -> widget views in its saved outputs
    screenshot: Path
    console_errors: list[str] = field(default_factory=list)  # the browser console's errors

    @property
    def panel(self) -> Locator:
        """The open notebook panel: every selector is scoped to it."""
        return self.page.locator(PANEL)

    def unfinished(self) -> list[str]:
        """One line per non-empty code cell whose prompt shows no execution count."""
        lines = []
        for cell, prompt in zip(self.code_cells, self.prompts, strict=False):
            if cell["source"].strip() and not prompt.strip("[]: ").isdigit():
                first = cell["source"].strip().splitlines()[0][:70]
                lines.append(f"cell {cell['index']} prompt {prompt!r}: {first}")
        return lines


class NotebookRuns:
    """Runs each notebook once and keeps the latest open, so several tests can inspect it."""

    def __init__(self, browser: Browser, lab: LabServer, artifacts: Path) -> None:
        self.browser = browser
        self.lab = lab
        self.artifacts = artifacts
        self.timings: dict[str, dict[str, float]] = {}
        self._current: NotebookRun | None = None
        self._started = 0.0
        self._failed: dict[str, str] = {}
        # One browser profile for the session: JupyterLab's assets load from its cache after the
        # first notebook. Each notebook still gets a page of its own and a reset workspace.
        self._context: BrowserContext | None = None

    def get(self, name: str) -> NotebookRun:
        """The run of notebook `name`, opening and running it if it is not the one open."""
        if name in self._failed:
            pytest.fail(self._failed[name], pytrace=False)
        if self._current is not None and self._current.name == name:
            return self._current
        self.close()
        try:
            self._current = self._open_and_run(name)
        except (_RunFailed, PlaywrightError) as failure:
            self._failed[name] = (
                f"{name}: {failure}" if isinstance(failure, PlaywrightError) else str(failure)
            )
        if self._current is None:  # failed outside the except block: no chained traceback
            pytest.fail(self._failed[name], pytrace=False)
        return self._current

    def close(self) -> None:
        """Close the open notebook: its page, then its kernel session."""
        run, self._current = self._current, None
        if run is None:
            return
        try:
            run.page.close()
        finally:
            self.lab.close_sessions(run.name)
            self.timings.setdefault(run.name, {})["total"] = time.monotonic() - self._started

    def shutdown(self) -> None:
        """Close the open notebook, then the browser profile."""
        try:
            self.close()
        finally:
            if self._context is not None:
                self._context.close()
                self._context = None

    def _open_and_run(self, name: str) -> NotebookRun:
        """Open `name` in a new page, wait for its kernel, Run All, save."""
        self._started = time.monotonic()
        timing = self.timings[name] = {}
        # The served copy, not the source: a notebook being edited meanwhile must not disagree.
        notebook = json.loads((self.lab.root / name).read_text(encoding="utf-8"))
        cells = notebook["cells"]
        code_cells = [
            {"index": i + 1, "source": _source(c)}
            for i, c in enumerate(cells)
            if c.get("cell_type") == "code"
        ]
        if self._context is None:
            self._context = self.browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        page = self._context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(f"page error: {e}"))
        shot = self.artifacts / f"{Path(name).stem}.png"
        try:
            # Start the notebook's kernel while JupyterLab loads: the page then joins this session,
            # as it would join one a learner left running. Saves the kernel's start-up time.
            kernel = notebook.get("metadata", {}).get("kernelspec", {}).get("name", "python3")
            self.lab.api(
                "POST",
                "api/sessions",
                {"path": name, "name": name, "type": "notebook", "kernel": {"name": kernel}},
            )
            query = urllib.parse.urlencode({"token": self.lab.token})
            page.goto(self.lab.page_url(f"lab/tree/{urllib.parse.quote(name)}?reset&{query}"))
            self._wait(page, _KERNEL_IDLE_JS, PANEL, KERNEL_TIMEOUT, f"{name}: kernel never idle")
            timing["open"] = time.monotonic() - self._started
            shown = len(page.evaluate(_PROMPTS_JS, PANEL))
            if shown != len(code_cells):  # windowing would detach cells scrolled out of view
                raise _RunFailed(
                    f"{name}: the page shows {shown} code cells, the file has "
                    f"{len(code_cells)} (is windowingMode 'none' in effect?)"
                )
            run_started = time.monotonic()
            _run_all(page)
            mask = [bool(c["source"].strip()) for c in code_cells]
            finished = self._wait(page, _RUN_DONE_JS, [PANEL, mask, ERROR_MIME], RUN_TIMEOUT, None)
            timing["run"] = time.monotonic() - run_started
            prompts = page.evaluate(_PROMPTS_JS, PANEL)
            saved = self._save(page, name)
            run = NotebookRun(
                name,
                page,
                code_cells,
                prompts,
                _error_outputs(saved),
                _widget_views(saved),
                shot,
                console,
            )
            if not run.errors:  # and what the page itself draws as an error, should it differ
                errors = page.locator(f"{PANEL} [data-mime-type='{ERROR_MIME}']").all_inner_texts()
                run.errors = [f"on the page:\n{text}" for text in errors]
            wait_for_widgets(page, sum(run.widget_views.values()))
            full_page_screenshot(page, shot)  # saved first: no unsaved-changes dot on the tab
            _widget_screenshot(run, self.artifacts / f"{Path(name).stem}-widgets.png")
            if not finished and not run.errors:  # an error is reported by the test, with its text
                raise _RunFailed(
                    f"{name}: not every code cell finished within {RUN_TIMEOUT:.0f} s:\n  "
                    + "\n  ".join(run.unfinished())
                    + f"\nscreenshot: {shot}"
                )
            return run
        except BaseException:
            try:
                full_page_screenshot(page, shot)  # what the page showed when it went wrong
            except PlaywrightError:
                pass
            page.close()
            self.lab.close_sessions(name)
            raise

    def _save(self, page: Page, name: str) -> dict[str, Any]:
        """Save the notebook with its toolbar button; the saved notebook (nbformat JSON)."""
        with page.expect_response(
            lambda r: r.request.method == "PUT" and "/api/contents/" in r.url,
            timeout=UI_TIMEOUT * 1000,
        ) as response:
            page.locator(f"{PANEL} [data-jp-item-name='save']").click()
        if not response.value.ok:
            raise _RunFailed(f"{name}: saving the notebook failed: HTTP {response.value.status}")
        model = self.lab.api("GET", f"api/contents/{urllib.parse.quote(name)}?content=1")
        return dict(model["content"])

    @staticmethod
    def _wait(page: Page, js: str, arg: Any, timeout: float, message: str | None) -> bool:
        """Wait until `js(arg)` is true; False on timeout (or fail with `message` if given)."""
        try:
            page.wait_for_function(js, arg=arg, timeout=timeout * 1000, polling=250)
            return True
        except PlaywrightError:
            if message is None:
                return False
            raise _RunFailed(f"{message} within {timeout:.0f} s") from None


class _RunFailed(Exception):
    """A notebook could not be opened, run or saved; the message says where it stopped."""


def _widget_views(notebook: dict[str, Any]) -> dict[int, int]:
    """Notebook cell number (1-based) -> how many widget views its saved outputs hold."""
    views = {}
    for i, cell in enumerate(notebook["cells"]):
        n = sum(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", []))
        if n:
            views[i + 1] = n
    return views


def _error_outputs(notebook: dict[str, Any]) -> list[str]:
    """Each error output of the saved notebook: its cell number, exception and traceback."""
    errors = []
    for i, cell in enumerate(notebook["cells"]):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                trace = _ANSI.sub("", "\n".join(out.get("traceback", [])))
                errors.append(f"cell {i + 1}: {out.get('ename')}: {out.get('evalue')}\n{trace}")
    return errors


def _source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _run_all(page: Page) -> None:
    """Run ▸ Run All Cells, through the menu bar like a learner."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    item = page.locator("[data-command='runmenu:run-all']")
    item.wait_for(state="visible", timeout=UI_TIMEOUT * 1000)
    item.click()


def full_page_screenshot(page: Page, path: Path) -> None:
    """Screenshot the whole notebook: grow the window until no cell is scrolled out of sight."""
    extra = int(page.evaluate(_OVERFLOW_JS, PANEL))
    height = min(VIEWPORT["height"] + extra, MAX_SCREENSHOT_HEIGHT)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if extra:
            client = page.evaluate(
                "(p) => document.querySelector(p + ' .jp-WindowedPanel-outer').clientHeight", PANEL
            )
            page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
            page.wait_for_function(  # the notebook has grown with the window
                _FITS_JS,
                arg=[PANEL, client + height - VIEWPORT["height"]],
                timeout=UI_TIMEOUT * 1000,
            )
        page.screenshot(path=str(path), full_page=True)
    finally:
        if extra:
            page.set_viewport_size(VIEWPORT)  # type: ignore[arg-type]


def wait_for_widgets(page: Page, want: int) -> bool:
    """Wait (bounded) until `want` widget outputs are drawn, or one shows an error."""
    try:
        page.wait_for_function(
            """([panel, want, js]) => {
                 const found = eval(js)(panel);
                 return found.some((w) => w.broken)
                     || found.filter((w) => w.drawn && !w.loading).length >= want;
               }""",
            arg=[PANEL, want, WIDGETS_JS],
            timeout=UI_TIMEOUT * 1000,
            polling=250,
        )
        return True
    except PlaywrightError:
        return False


def _widget_screenshot(run: NotebookRun, path: Path) -> None:
    """A window-sized screenshot of the first widget as Run All left it (none without widgets)."""
    widget = run.panel.locator(".jp-OutputArea-output .jupyter-widgets").first
    if not run.widget_views or widget.count() == 0:
        return
    # The cell at the top of the window: the code that made the widget, then the widget.
    widget.evaluate("(e) => (e.closest('.jp-Notebook-cell') || e).scrollIntoView({block: 'start'})")
    run.page.screenshot(path=str(path))
