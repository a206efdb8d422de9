"""Read a submission's own code, without running it, for the known ways out of the autograder.

A notebook's tests run in the same Python process as the learner's code, so code in an answer
cell can change how every later cell runs: one line,
``get_ipython().input_transformers_cleanup.append(lambda lines: [])``, empties every test cell
that follows, and an empty test cell raises nothing, which nbgrader scores as full marks. No
check that runs inside that process can be trusted once such a line has run; a check that
reads the code before it runs can. This module is that reader::

    findings = scan.scan_notebook(nb, teacher=scan.teacher_cells(nb))
    for f in findings:
        print(f)        # "a1-recv-frame, line 3: get_ipython() reaches the kernel that runs ..."

It looks at every code cell the learner wrote (answer cells and cells they added; never the
set-up and test cells, which the autograder restores from the teacher's copy) and reports:

* ``escape`` findings: the kernel, the interpreter or the tests reached into (``get_ipython``,
  input or AST transformers, ``sys.modules``, frames, ``exec``/``eval``, ``builtins``, tracing
  hooks, names the set-up cells define rebound, their attributes replaced, ``__eq__`` defined,
  the gradebook named). Every graded cell after the finding scores 0.
* ``forbidden`` findings: an import from ``rpclab`` (the series' own code solves these
  exercises) that the set-up cells did not make, or a reach through a module the set-up cells
  import into one of its non-public parts (``grading.framing``). The graded cells whose code
  uses that cell score 0.

:func:`dependencies` says which cells a graded cell's code reaches (names resolved to the
statements that bind them); :func:`cells_to_zero` turns findings into the graded cells that
lose their points. Used by ``rpclab.classroom.autograde`` during ``nbgrader autograde``, and
from the command line, from the course folder::

    python -m rpclab.classroom.scan a1-framing      # every submission in submitted/

A determined learner can still get past a reader of source code (TEACHING.md says how, and how
to spot-check): it stops the one-line cheats, and names what it saw.

About 740 lines: one reader of a notebook's code -- its statements, the names each binds
and reads across cells, and the known ways out of the autograder -- which must be read
together to tell them from honest code.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = [
    "ESCAPE",
    "FORBIDDEN",
    "Finding",
    "scan_code",
    "scan_notebook",
    "teacher_cells",
    "dependencies",
    "cells_to_zero",
    "main",
]

ESCAPE = "escape"
FORBIDDEN = "forbidden"
MAX_SOURCE = 1_000_000  # characters of one cell read at most (a larger cell is itself a finding)

KERNEL = "reaches the kernel that runs the tests (it can rewrite or skip later cells)"

# Names whose mere use is a way out: they run code the reader cannot see, or reach namespaces,
# frames and the kernel.
NAMES = {
    "get_ipython": f"get_ipython() {KERNEL}",
    "exec": "exec() runs code this check cannot read",
    "eval": "eval() runs code this check cannot read",
    "compile": "compile() makes code this check cannot read",
    "__import__": "__import__() imports a module by a computed name",
    "globals": "globals() reaches every name the tests use",
    "locals": "locals() reaches the names of the code that calls it",
    "vars": "vars() reaches an object's or a module's namespace",
    "breakpoint": "breakpoint() stops the autograder's kernel",
    "__builtins__": "__builtins__ changes Python's own functions for every later cell",
}

# Modules an answer has no reason to import: the kernel, the interpreter's internals, tracing,
# test doubles, other processes, and nbgrader itself.
MODULES = {
    "IPython": KERNEL,
    "ipykernel": KERNEL,
    "jupyter_client": KERNEL,
    "nbclient": "nbclient runs notebooks: the autograder's own machinery",
    "nbformat": "nbformat reads and writes notebooks: the autograder's own machinery",
    "nbgrader": "nbgrader is the autograder itself",
    "builtins": "builtins changes Python's own functions for every later cell",
    "importlib": "importlib imports modules by computed names and replaces loaded ones",
    "ctypes": "ctypes changes the interpreter's memory",
    "gc": "gc reaches every object in the kernel, the tests' included",
    "code": "code runs code this check cannot read",
    "codeop": "codeop compiles code this check cannot read",
    "runpy": "runpy runs code this check cannot read",
    "pdb": "pdb stops and steers the autograder's kernel",
    "bdb": "bdb traces and steers every later line",
    "trace": "trace hooks every later line",
    "tracemalloc": "tracemalloc is what the tests use to measure memory",
    "unittest": "unittest.mock replaces what the tests call",
    "signal": "signal handlers change how the autograder interrupts a cell",
    "atexit": "atexit runs code after the tests",
    "subprocess": "subprocess starts programs the autograder does not see",
    "multiprocessing": "multiprocessing starts processes the autograder does not see",
}

# Attribute names that belong to the kernel, to frames and to the object model's back doors,
# whatever object they are read from.
ATTRIBUTES = {
    **{
        name: f"{name} {KERNEL}"
        for name in (
            "input_transformers_cleanup",
            "input_transformers_post",
            "input_transformer_manager",
            "ast_transformers",
            "run_cell",
            "run_line_magic",
            "run_cell_magic",
            "transform_cell",
            "run_ast_nodes",
            "user_ns",
            "user_global_ns",
            "showtraceback",
        )
    },
    **{
        name: f"{name} reaches a function's or a class's internals, the tests' included"
        for name in (
            "__globals__",
            "__code__",
            "__closure__",
            "__subclasses__",
            "__bases__",
            "__base__",
            "__mro__",
            "__builtins__",
            "__import__",
            "__loader__",
            "__spec__",
        )
    },
    **{
        name: f"{name} reaches a running frame: the tests' variables, or the test cell's code"
        for name in (
            "f_back",
            "f_globals",
            "f_locals",
            "f_builtins",
            "f_trace",
            "tb_frame",
            "gi_frame",
            "cr_frame",
            "ag_frame",
        )
    },
}

# module.attribute pairs that are ways out (the modules themselves are fine to import).
MODULE_ATTRIBUTES = {
    **{
        ("sys", name): f"sys.{name} {why}"
        for name, why in {
            "modules": "replaces modules the tests import",
            "meta_path": "changes how every later import is found",
            "path_hooks": "changes how every later import is found",
            "settrace": "hooks every later line, the tests' included",
            "setprofile": "hooks every later call, the tests' included",
            "_getframe": "reaches a running frame: the tests' variables",
            "stdout": "replaces where the tests' output goes",
            "stderr": "replaces where the tests' errors go",
            "displayhook": "changes how the kernel shows results",
            "excepthook": "changes how the kernel reports errors",
            "addaudithook": "hooks the interpreter",
            "breakpointhook": "hooks the interpreter",
        }.items()
    },
    **{
        ("threading", name): f"threading.{name} hooks every later line or call"
        for name in ("settrace", "setprofile", "settrace_all_threads", "setprofile_all_threads")
    },
    **{
        ("inspect", name): f"inspect.{name} reaches running frames: the tests' variables"
        for name in ("currentframe", "stack", "getouterframes", "trace", "getinnerframes")
    },
    **{
        ("os", name): f"os.{name} {why}"
        for name, why in {
            "system": "runs programs the autograder does not see",
            "popen": "runs programs the autograder does not see",
            "kill": "signals processes, the autograder's kernel included",
            "_exit": "ends the autograder's kernel",
            "fork": "copies the autograder's kernel",
            "chdir": "moves every later cell to another folder",
            "execv": "replaces the autograder's kernel",
            "execve": "replaces the autograder's kernel",
            "execl": "replaces the autograder's kernel",
            "execlp": "replaces the autograder's kernel",
            "execvp": "replaces the autograder's kernel",
            "spawnv": "runs programs the autograder does not see",
            "posix_spawn": "runs programs the autograder does not see",
        }.items()
    },
}

# Methods whose definition fools a test: an object whose __eq__ always says True passes every
# `assert result == expected`.
METHODS = {
    "__eq__": "defines __eq__: an object that equals anything passes every `assert x == y`",
    "__ne__": "defines __ne__: an object that differs from nothing passes every `assert x != y`",
}

WORDS = {"gradebook": "names nbgrader's gradebook, where the scores are kept"}


@dataclass(frozen=True)
class Finding:
    """One way out, or one forbidden import, seen in one cell."""

    cell: int  # the cell's index in the notebook
    cell_id: str  # its nbgrader grade_id, or "cell N" for a cell the learner added
    line: int  # 1-based, in the cell
    kind: str  # ESCAPE or FORBIDDEN
    what: str

    def __str__(self) -> str:
        return f"{self.cell_id}, line {self.line}: {self.what}"


# --------------------------------------------------------------------------- reading one cell


def _python(source: str) -> ast.Module | None:
    """The cell as Python (IPython's %magics and !commands turned into get_ipython() calls), or
    None when it is not valid Python (it will fail when it runs, which costs its own points)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # IPython missing, or a cell it cannot transform: read it as it is
        pass
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _root(node: ast.AST) -> tuple[str | None, list[str]]:
    """``a.b.c`` -> ("a", ["b", "c"]); ``a[0].b`` -> ("a", ["b"]); anything else -> (None, [])."""
    path: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            path.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript | ast.Call):
            node = node.value if isinstance(node, ast.Subscript) else node.func
        elif isinstance(node, ast.Name):
            return node.id, list(reversed(path))
        else:
            return None, []


def _stored_names(nodes: Iterable[ast.AST]) -> set[str]:
    """Names a block binds in its own scope (not inside the functions and classes it defines)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for node in nodes:
        visit(node)
    return names


def _imports(tree: ast.Module) -> dict[str, str]:
    """The module-level names an import binds -> the module (or module.attribute) they name."""
    bound: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _public(module: ModuleType, name: str) -> bool:
    """Is ``module.name`` part of the module's public interface (and not itself a module)?"""
    value = getattr(module, name, None)
    if isinstance(value, ModuleType):
        return False
    public = getattr(module, "__all__", None)
    return name in public if public is not None else not name.startswith("_")


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:
        return None


class _Reader(ast.NodeVisitor):
    """Walks one learner cell; keeps (line, kind, what) for every finding."""

    def __init__(
        self, teacher_names: set[str], teacher_imports: Mapping[str, str], imports: dict[str, str]
    ):
        self.teacher_names = teacher_names
        self.teacher_imports = teacher_imports
        self.imports = imports  # name -> module, every import seen so far, the teacher's too
        self.found: list[tuple[int, str, str]] = []
        self.scopes: list[set[str]] = []  # the local names of each function we are inside

    def report(self, node: ast.AST, kind: str, what: str) -> None:
        self.found.append((getattr(node, "lineno", 1), kind, what))

    def local(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def module_of(self, name: str) -> str | None:
        return None if self.local(name) else self.imports.get(name)

    # -- scopes

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name in METHODS:
            self.report(node, ESCAPE, METHODS[node.name])
        if not self.scopes:
            self.rebinds(node, node.name)
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in node.args.defaults + node.args.kw_defaults:
            if default is not None:
                self.visit(default)
        declared_global = {
            name for n in ast.walk(node) if isinstance(n, ast.Global) for name in n.names
        }
        self.scopes.append(
            _stored_names([node.args, *node.body]) - declared_global - {node.name}
            | {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        )
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.scopes.append({a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)})
        self.visit(node.body)
        self.scopes.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.scopes:
            self.rebinds(node, node.name)
        self.generic_visit(node)

    # -- names, attributes, imports

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in NAMES and not self.local(node.id):
            self.report(node, ESCAPE, NAMES[node.id])
        if isinstance(node.ctx, ast.Store | ast.Del) and not self.scopes:
            self.rebinds(node, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ATTRIBUTES:
            self.report(node, ESCAPE, ATTRIBUTES[node.attr])
        if isinstance(node.value, ast.Name):
            root = node.value.id
            module = self.module_of(root)
            if module and (module, node.attr) in MODULE_ATTRIBUTES:
                self.report(node, ESCAPE, MODULE_ATTRIBUTES[(module, node.attr)])
            # Past a set-up module's public interface: grading.framing, background._servers.
            if module and module.startswith("rpclab") and module == self.teacher_imports.get(root):
                loaded = _module(module)
                if loaded is not None and not _public(loaded, node.attr):
                    self.report(
                        node,
                        FORBIDDEN,
                        f"{root}.{node.attr} reaches past {module}'s public interface "
                        "(answers are written without the series' own code)",
                    )
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.changes(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.changes(node)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            module = alias.name if alias.asname else alias.name.split(".")[0]
            self.imported(node, alias.name, bound, module)
            if alias.name.split(".")[0] == "rpclab" and alias.name not in self.allowed:
                self.forbidden(node, alias.name)
            self.imports[bound] = module

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            self.report(node, ESCAPE, "a relative import reaches the autograder's folder")
            return
        for alias in node.names:
            bound = alias.asname or alias.name
            full = f"{node.module}.{alias.name}"
            self.imported(node, node.module, bound, full)
            if (node.module, alias.name) in MODULE_ATTRIBUTES:
                self.report(node, ESCAPE, MODULE_ATTRIBUTES[(node.module, alias.name)])
            if node.module.split(".")[0] == "rpclab" and full not in self.allowed:
                loaded = _module(node.module) if node.module in self.allowed else None
                if loaded is None or not _public(loaded, alias.name):
                    self.forbidden(node, full)
            self.imports[bound] = full

    @property
    def allowed(self) -> set[str]:
        """The rpclab modules (and names) the set-up cells import: the learner may too."""
        return set(self.teacher_imports.values())

    def forbidden(self, node: ast.AST, module: str) -> None:
        self.report(
            node, FORBIDDEN, f"imports {module}: answers are written without the series' own code"
        )

    def imported(self, node: ast.AST, module: str, bound: str, value: str) -> None:
        top = module.split(".")[0]
        if top in MODULES:
            self.report(node, ESCAPE, f"imports {module}: {MODULES[top]}")
        if not self.scopes and self.teacher_imports.get(bound) not in (None, value):
            self.report(
                node, ESCAPE, f"rebinds {bound}, which the set-up cells import and the tests use"
            )
        elif not self.scopes:
            self.rebinds(node, bound)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and node.args:
            root, _ = _root(node.args[0])
            if (
                root
                and not self.local(root)
                and (root in self.imports or root in self.teacher_names)
            ):
                self.report(node, ESCAPE, f"{func.id}() changes {root}, which the tests rely on")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for word, why in WORDS.items():
                if word in node.value.lower():
                    self.report(node, ESCAPE, why)

    # -- changes to what the set-up cells define

    def rebinds(self, node: ast.AST, name: str) -> None:
        if name in self.teacher_names and name not in self.teacher_imports:
            self.report(
                node, ESCAPE, f"redefines {name}, which the set-up cells define and the tests use"
            )

    def changes(self, node: ast.Attribute | ast.Subscript) -> None:
        root, path = _root(node)
        if root is None or self.local(root):
            return
        if root in self.teacher_names or root in self.imports:
            target = ".".join([root, *path]) if path else f"{root}[...]"
            self.report(node, ESCAPE, f"changes {target}, which the tests rely on")


def _teacher_context(sources: Sequence[str]) -> tuple[set[str], dict[str, str]]:
    """(the names the tests rely on, the imports the set-up cells make) from the teacher's cells,
    in notebook order.

    A name is relied on when a teacher cell reads it without binding it, and an earlier teacher
    cell binds it (``HEADER``, ``HANDLERS``, ``execute``, ``bank``). Names a test cell binds for
    itself (``server = ...``) are not: a learner's scratch cell may use them too.
    """
    symbols = [_symbols(source) for source in sources]
    relied_on: set[str] = set()
    for k, (bound, used) in enumerate(symbols):
        earlier = set().union(*(b for b, _ in symbols[:k])) if k else set()
        relied_on |= (used - bound) & earlier
    imports: dict[str, str] = {}
    for source in sources:
        tree = _python(source)
        if tree is not None:
            imports.update(_imports(tree))
    return relied_on, imports


def scan_code(
    source: str,
    *,
    teacher_sources: Sequence[str] = (),
    earlier_imports: Mapping[str, str] | None = None,
) -> list[tuple[int, str, str]]:
    """Findings in one cell, as (line, kind, what). ``teacher_sources``: the set-up cells' code
    (the names they define must not be rebound; their rpclab imports are allowed)."""
    if len(source) > MAX_SOURCE:
        return [(1, ESCAPE, f"a cell of {len(source)} characters: too long to read")]
    tree = _python(source)
    if tree is None:
        return []
    names, teacher_imports = _teacher_context(teacher_sources)
    reader = _Reader(names, teacher_imports, {**teacher_imports, **(earlier_imports or {})})
    reader.visit(tree)
    return sorted(set(reader.found))


# --------------------------------------------------------------------------- whole notebooks


def _meta(cell: Mapping) -> Mapping:
    return cell.get("metadata", {}).get("nbgrader", {})


def _label(nb, index: int) -> str:
    return _meta(nb.cells[index]).get("grade_id") or f"cell {index + 1}"


def teacher_cells(nb, source=None) -> set[int]:
    """Indices of the cells the autograder restores from the teacher's copy (locked cells).

    With ``source`` (the teacher's notebook), a cell counts as the teacher's when its grade_id
    names a locked cell there, whatever the submission's metadata says; without it, the
    notebook's own ``locked`` flags are trusted (as they are after nbgrader has restored them).
    """
    if source is not None:
        locked = {_meta(c).get("grade_id") for c in source.cells if _meta(c).get("locked")}
        locked.discard(None)
        return {i for i, c in enumerate(nb.cells) if _meta(c).get("grade_id") in locked}
    return {i for i, c in enumerate(nb.cells) if _meta(c).get("locked")}


def scan_notebook(nb, *, teacher: set[int] | None = None) -> list[Finding]:
    """Every finding in the learner's cells of ``nb`` (code cells that are not the teacher's)."""
    teacher = teacher_cells(nb) if teacher is None else teacher
    codes = [(i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    teacher_sources = [c.source for i, c in codes if i in teacher]
    imports: dict[str, str] = {}
    findings = []
    for index, cell in codes:
        if index in teacher:
            continue
        for line, kind, what in scan_code(
            cell.source, teacher_sources=teacher_sources, earlier_imports=imports
        ):
            findings.append(Finding(index, _label(nb, index), line, kind, what))
        tree = _python(cell.source)
        if tree is not None:
            imports.update(_imports(tree))
    return findings


def _free_reads(node: ast.AST, local: frozenset[str] = frozenset()) -> set[str]:
    """The names ``node`` reads that are not local to a function (or lambda) inside it: the
    module-level names it depends on."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        body = node.body if isinstance(node.body, list) else [node.body]
        inner = frozenset(local | _stored_names([node.args, *body]))
        reads: set[str] = set()
        for part in [*getattr(node, "decorator_list", []), *node.args.defaults]:
            reads |= _free_reads(part, local)
        for statement in body:
            reads |= _free_reads(statement, inner)
        return reads
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return set() if node.id in local else {node.id}
    reads = set()
    for child in ast.iter_child_nodes(node):
        reads |= _free_reads(child, local)
    return reads


def _symbols(source: str) -> tuple[set[str], set[str]]:
    """(names the cell binds at module level, module-level names it reads)."""
    tree = _python(source)
    if tree is None:
        return set(), set()
    return _stored_names(tree.body), _free_reads(tree)


@dataclass(frozen=True)
class _Statement:
    """One top-level statement of a cell: where it is, what it binds, what it reads."""

    cell: int
    first: int  # its lines in the cell, 1-based
    last: int
    binds: frozenset[str]
    reads: frozenset[str]


def _statements(nb) -> list[_Statement]:
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        tree = _python(cell.source)
        for node in tree.body if tree is not None else []:
            reads = _free_reads(node)
            found.append(
                _Statement(
                    index,
                    node.lineno,
                    node.end_lineno or node.lineno,
                    frozenset(_stored_names([node])),
                    frozenset(reads),
                )
            )
    return found


def _reach(nb) -> dict[int, set[_Statement]]:
    """For each graded cell: the top-level statements its code reaches.

    A name resolves to the last statement before the end of the graded cell that binds it, and
    the names that statement reads are followed in turn (a test calls ``roundtrip``, a set-up
    function, which calls the learner's ``dispatch``: the test reaches the answer cell through
    the set-up cell). Statements, not cells: a function an answer cell defines next to an import
    the assignment forbids does not carry the import's cost unless it uses it.
    """
    statements = _statements(nb)
    result = {}
    for graded, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code" or not _meta(cell).get("grade"):
            continue
        before = [s for s in statements if s.cell <= graded]
        reached = {s for s in before if s.cell == graded}
        todo = list(reached)
        while todo:
            for name in todo.pop().reads:
                definers = [s for s in before if name in s.binds]
                if definers and definers[-1] not in reached:
                    reached.add(definers[-1])
                    todo.append(definers[-1])
        result[graded] = reached
    return result


def dependencies(nb) -> dict[int, set[int]]:
    """For each graded cell: the indices of the other code cells its code reaches."""
    return {graded: {s.cell for s in reached} - {graded} for graded, reached in _reach(nb).items()}


def cells_to_zero(nb, findings: Iterable[Finding]) -> dict[int, list[Finding]]:
    """Graded cell index -> the findings that cost it its points.

    An escape costs every graded cell after it; a forbidden import costs the graded cells whose
    code reaches the statement that holds it.
    """
    findings = list(findings)
    reach = _reach(nb) if any(f.kind == FORBIDDEN for f in findings) else {}
    graded = [
        i for i, c in enumerate(nb.cells) if c.get("cell_type") == "code" and _meta(c).get("grade")
    ]
    zero: dict[int, list[Finding]] = {}
    for finding in findings:
        for index in graded:
            if finding.kind == ESCAPE:
                hit = index > finding.cell
            else:
                hit = any(
                    s.cell == finding.cell and s.first <= finding.line <= s.last
                    for s in reach.get(index, set())
                )
            if hit:
                zero.setdefault(index, []).append(finding)
    return zero


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Scan submitted/<student>/<assignment>/*.ipynb; print one line per finding; exit 1 if any."""
    import nbformat

    parser = argparse.ArgumentParser(
        prog="python -m rpclab.classroom.scan",
        description="Read every submission of the assignments for ways out of the autograder "
        "and for forbidden imports (run it from the course folder, assignments/).",
    )
    parser.add_argument("assignments", nargs="+", help="assignment names, e.g. a1-framing")
    parser.add_argument("--course", default=".", help="the course folder (default: .)")
    parser.add_argument(
        "--submissions", default="submitted", help="folder of <student>/<assignment>/ (submitted)"
    )
    args = parser.parse_args(argv)
    course = Path(args.course)
    total = 0
    for assignment in args.assignments:
        sources = sorted((course / "source" / assignment).glob("*.ipynb"))
        if not sources:
            print(f"{assignment}: no source notebooks in {course / 'source' / assignment}")
            return 2
        for source_path in sources:
            source = nbformat.read(source_path, as_version=4)
            pattern = f"*/{assignment}/{source_path.name}"
            for path in sorted((course / args.submissions).glob(pattern)):
                student = path.parent.parent.name
                nb = nbformat.read(path, as_version=4)
                findings = scan_notebook(nb, teacher=teacher_cells(nb, source))
                for finding in findings:
                    print(
                        f"{student} · {assignment}/{source_path.name} · {finding} [{finding.kind}]"
                    )
                total += len(findings)
    print(f"{total} finding(s)", file=sys.stderr)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
