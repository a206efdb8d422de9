"""What a learner sees in JupyterLab: every notebook runs clean, every widget draws and responds.

nbval proves the kernel side; these tests open each notebook in a real JupyterLab in Chromium,
Run All from the Run menu, and look at the page. Screenshots land in artifacts/browser/.
Widget interactions live in widget_interactions.py (its docstring says how to add one).
"""

from __future__ import annotations

import pytest
from browser_env import NOTEBOOKS, PlaywrightError, notebook_names
from lab_server import SETTINGS_OVERRIDES, LabServer
from notebook_page import PANEL, UI_TIMEOUT, WIDGETS_JS, NotebookRun, wait_for_widgets
from widget_interactions import INTERACTIONS, WATCHED_TEXT_JS, Interaction

pytestmark = pytest.mark.browser

NAMES = notebook_names()
NO_NOTEBOOKS = [pytest.param("-", marks=pytest.mark.skip(reason=f"no notebooks in {NOTEBOOKS}"))]
INTERACTION_CASES = [
    pytest.param(name, interaction, id=f"{name.removesuffix('.ipynb')}-{interaction.id}")
    for name in NAMES
    for interaction in INTERACTIONS.get(name.removesuffix(".ipynb"), [])
]


def _ids(names: list[str]) -> list[str]:
    return [n.removesuffix(".ipynb") for n in names]


@pytest.mark.parametrize("notebook", NAMES or NO_NOTEBOOKS, ids=_ids(NAMES) or None)
def test_runs_without_error_output(notebook_run: NotebookRun) -> None:
    """Run All finishes every code cell, and no cell shows an error (traceback) output."""
    if notebook_run.errors:
        pytest.fail(
            f"{notebook_run.name} shows {len(notebook_run.errors)} error output(s) "
            f"(screenshot {notebook_run.screenshot}):\n\n" + "\n---\n".join(notebook_run.errors),
            pytrace=False,
        )
    unfinished = notebook_run.unfinished()
    assert not unfinished, f"{notebook_run.name}: cells left unrun:\n  " + "\n  ".join(unfinished)


@pytest.mark.parametrize("notebook", NAMES or NO_NOTEBOOKS, ids=_ids(NAMES) or None)
def test_every_widget_renders(notebook_run: NotebookRun) -> None:
    """Each widget the kernel displayed is drawn on the page, none says "Error displaying
    widget"."""
    expected = notebook_run.widget_views
    page = notebook_run.page
    wait_for_widgets(page, sum(expected.values()))  # drawn asynchronously; already waited once
    found = page.evaluate(WIDGETS_JS, PANEL)
    broken = [w for w in found if w["broken"] or not w["drawn"] or w["loading"]]
    console = "".join(f"\n  {line[:300]}" for line in notebook_run.console_errors[-10:])
    assert not broken, (
        f"{notebook_run.name}: widgets not drawn (see {notebook_run.screenshot}):\n"
        + "\n".join(f"  cell {w['cell']}: {w['text']!r}" for w in broken)
        + (f"\nbrowser console errors:{console}" if console else "")
    )
    drawn: dict[int, int] = {}
    for w in found:
        drawn[w["cell"]] = drawn.get(w["cell"], 0) + 1
    assert drawn == expected, (
        f"{notebook_run.name}: widget views per cell, drawn on the page {drawn} "
        f"vs displayed by the kernel {expected} (see {notebook_run.screenshot})"
        + (f"\nbrowser console errors:{console}" if console else "")
    )
    if not expected:
        assert not page.locator(f"{PANEL} .jupyter-widgets").count()


@pytest.mark.parametrize(
    ("notebook", "interaction"),
    INTERACTION_CASES
    or [
        pytest.param(
            "-", None, marks=pytest.mark.skip(reason="no widget interactions for these notebooks")
        )
    ],
)
def test_widget_interaction(notebook_run: NotebookRun, interaction: Interaction) -> None:
    """Acting on a control (slider, button, field, checkbox, dropdown) changes what is shown."""
    control = interaction.locate(notebook_run.panel)
    try:
        control.wait_for(state="visible", timeout=UI_TIMEOUT * 1000)
        found = True
    except PlaywrightError:
        found = False
    if not found:
        pytest.fail(
            f"{notebook_run.name}: no {interaction.action} labelled {interaction.label!r} "
            f"(match #{interaction.nth}) is visible; see {notebook_run.screenshot}",
            pytrace=False,
        )
    control.scroll_into_view_if_needed()
    area = control.evaluate_handle("(e) => e.closest('.jp-Cell-outputArea')")
    before = notebook_run.page.evaluate(WATCHED_TEXT_JS, [area, interaction.watch])
    if interaction.watch:
        assert before.strip("|\n"), (
            f"watch={interaction.watch!r} matches nothing next to the control"
        )
    interaction.perform(control)
    try:
        notebook_run.page.wait_for_function(
            """([area, watch, before, expect, js]) => {
                 const now = eval(js)([area, watch]);
                 return now !== before && (!expect || now.includes(expect));
               }""",
            arg=[area, interaction.watch, before, interaction.expect, WATCHED_TEXT_JS],
            timeout=interaction.timeout * 1000,
            polling=200,
        )
        return
    except PlaywrightError:
        after = notebook_run.page.evaluate(WATCHED_TEXT_JS, [area, interaction.watch])
    wanted = "changed nothing shown" if after == before else f"never showed {interaction.expect!r}"
    pytest.fail(
        f"{notebook_run.name}: {interaction.id} {wanted} within {interaction.timeout:.0f} s; "
        f"it shows:\n{after[:800]}",
        pytrace=False,
    )


@pytest.mark.parametrize("notebook", NAMES[:1] or NO_NOTEBOOKS, ids=_ids(NAMES[:1]) or None)
def test_settings_overrides_keep_popups_away(notebook_run: NotebookRun, lab: LabServer) -> None:
    """The suite's own overrides.json reaches the page: no news or update pop-up covers a
    screenshot."""
    for plugin, values in SETTINGS_OVERRIDES.items():
        schema = lab.api("GET", f"lab/api/settings/{plugin}")["schema"]
        for key, value in values.items():
            assert schema["properties"][key]["default"] == value, (plugin, key)
    page = notebook_run.page
    assert page.locator(".Toastify__toast").count() == 0, page.locator(
        ".Toastify__toast"
    ).all_inner_texts()
    assert page.get_by_text("official Jupyter news").count() == 0


def test_interaction_registry_names_existing_notebooks() -> None:
    """Every registry key is a notebook that exists, so a rename cannot silently drop
    interactions."""
    stems = {n.removesuffix(".ipynb") for n in NAMES}
    assert set(INTERACTIONS) <= stems, sorted(set(INTERACTIONS) - stems)
