"""The package's architecture, checked: stages in layers that point one way, no import circles.

``pipeline/`` is one subpackage per stage (see ``docs/architecture.md``). A module may import
from its own package and from packages of lower layers (:data:`LAYERS`), never from a higher
one nor from a sibling of the same layer. Every import counts: module level, inside functions
(lazy), ``importlib.import_module("...")`` with a constant name, and the tables of
:func:`pipeline.core.lazy.lazy_exports`. ``flows`` and ``bench`` use ``pipeline``, never the
reverse: ``pipeline/`` reaches them only from inside a function of ``pipeline/cli/dispatch.py``
(its documented dispatch points, ``SUBCOMMAND_MODULES`` and ``BENCHMARKS``), and never behind an
``except ImportError``. ``flows/pipeline.py`` and ``flows/batch.py`` (and ``flows/serve.py``)
do not import each other's modules. No module of ``pipeline``, ``flows`` or ``bench`` is over
:data:`MAX_LINES` lines, and every stage package says what it offers in ``__all__``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UPPER = ("flows", "bench")
#: The stages, lowest first. ``api`` is the module ``pipeline/api.py``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("inputs",),
    ("split",),
    ("sampling",),
    ("models",),
    ("evaluation", "mapping"),
    ("report",),
    ("config",),
    ("runner",),
    ("cli", "api"),
)
MAX_LINES = 600


def _imports(node: ast.AST) -> list[tuple[str, int]]:
    """``(dotted name, line)`` of every import under ``node``; ``from a import b`` gives ``a.b``
    (resolved against the module table later: ``b`` may be a module or a name of ``a``)."""
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out += [(a.name, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out += [(f"{n.module}.{a.name}", n.lineno) for a in n.names]
        elif isinstance(n, ast.Call) and n.args and isinstance(n.args[0], ast.Constant):
            func = getattr(n.func, "attr", getattr(n.func, "id", ""))
            if func in ("import_module", "__import__"):
                out.append((str(n.args[0].value), n.lineno))
            elif func == "lazy_exports" and len(n.args) == 2 and isinstance(n.args[1], ast.Dict):
                package = n.args[0].value if isinstance(n.args[0].value, str) else None
                for v in n.args[1].values:
                    if isinstance(v, ast.Constant) and package:
                        out.append((f"{package}.{v.value}", n.lineno))
    return out


def _lazy_package_names(tree: ast.Module, module: str) -> list[ast.Call]:
    """Replace ``lazy_exports(__name__, ...)`` by the module's own name (for the check above)."""
    calls = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "lazy_exports" and n.args:
            if isinstance(n.args[0], ast.Name) and n.args[0].id == "__name__":
                n.args[0] = ast.Constant(module)
            calls.append(n)
    return calls


def _top(name: str) -> str:
    return name.split(".")[0]


def _module_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run at import: everything except function and class bodies' functions."""
    out: list[ast.stmt] = []
    todo = list(tree.body)
    while todo:
        s = todo.pop()
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(s, ast.ClassDef):
            todo += [b for b in s.body if not isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))]
            continue
        out.append(s)
    return out


def modules(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of ``pipeline`` and ``flows`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted([*(root / "pipeline").rglob("*.py"), *(root / "flows").rglob("*.py")]):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def import_graph(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Every module's imports of other modules of ``pipeline`` and ``flows``, lazy ones included."""
    mods = modules(root)
    graph: dict[str, list[tuple[str, int]]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        _lazy_package_names(tree, name)
        edges = []
        for target, line in _imports(tree):
            while target not in mods and "." in target:  # `from a import name`: the module is `a`
                target = target.rsplit(".", 1)[0]
            if target in mods and target != name:
                edges.append((target, line))
        graph[name] = edges
    return graph


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pipeline" and len(parts) > 1 else None


def layer_violations(root: Path) -> list[str]:
    """Imports that point up the layers or sideways between stages of one layer."""
    rank = {stage: i for i, stages in enumerate(LAYERS) for stage in stages}
    bad = []
    known = set(rank)
    for module, edges in import_graph(root).items():
        here = _stage(module)
        if module.startswith("pipeline.") and here not in known:
            bad.append(f"{module}: not in a stage package of LAYERS")
            continue
        for target, line in edges:
            there = _stage(target)
            if here is None or there is None or here == there:
                continue
            if rank[here] < rank[there]:
                bad.append(f"{module}:{line}: imports {target} (a higher layer: {here} < {there})")
            elif rank[here] == rank[there]:
                bad.append(f"{module}:{line}: imports {target} (stages {here} and {there} share a layer)")
    return bad


def import_circles(root: Path) -> list[list[str]]:
    """The import circles (strongly connected components of more than one module, or a module
    importing itself through its package's table)."""
    graph = {m: [t for t, _ in edges] for m, edges in import_graph(root).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def upper_layer_violations(root: Path) -> list[str]:
    """``pipeline`` reaching ``flows`` or ``bench`` outside the CLI's dispatch points; the flows
    reaching each other."""
    bad = []
    for path in sorted((root / "pipeline").rglob("*.py")):
        rel = path.relative_to(root)
        tree = ast.parse(path.read_text(), str(rel))
        for stmt in _module_level(tree):
            for name, line in _imports(stmt):
                if _top(name) in UPPER:
                    bad.append(f"{rel}:{line}: imports {name} at module level")
        for n in ast.walk(tree):
            if isinstance(n, ast.Try) and any(_top(m) in UPPER for b in n.body for m, _ in _imports(b)):
                if any(
                    h.type is None or "ImportError" in ast.dump(h.type) or "ModuleNotFoundError" in ast.dump(h.type)
                    for h in n.handlers
                ):
                    bad.append(f"{rel}:{n.lineno}: hides an ImportError of a higher layer")
        if rel.as_posix() != "pipeline/cli/dispatch.py":
            bad += [f"{rel}:{line}: imports {name}" for name, line in _imports(tree) if _top(name) in UPPER]
    flows = {p.stem: p for p in (root / "flows").glob("*.py")}
    apart = {"pipeline": {"batch", "serve"}, "batch": {"pipeline"}, "serve": {"pipeline"}}
    for stem, others in apart.items():
        tree = ast.parse(flows[stem].read_text())
        for name, line in _imports(tree):
            if any(name == f"flows.{o}" or name.startswith(f"flows.{o}.") for o in others):
                bad.append(f"flows/{stem}.py:{line}: imports {name}")
    return bad


def long_modules(root: Path) -> list[str]:
    paths = [*(root / "pipeline").rglob("*.py"), *(root / "flows").rglob("*.py"), *(root / "bench").rglob("*.py")]
    return [
        f"{p.relative_to(root)}: {n} lines" for p in sorted(paths) if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]


def packages_without_all(root: Path) -> list[str]:
    bad = []
    for init in sorted((root / "pipeline").glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        names = [t.id for s in tree.body if isinstance(s, ast.Assign) for t in s.targets if isinstance(t, ast.Name)]
        if "__all__" not in names:
            bad.append(str(init.relative_to(root)))
    return bad


def test_stages_import_only_their_own_and_lower_layers():
    assert layer_violations(REPO) == []


def test_no_import_circles():
    assert import_circles(REPO) == []


def test_pipeline_never_imports_flows_or_bench():
    assert upper_layer_violations(REPO) == []


def test_no_module_is_over_600_lines():
    assert long_modules(REPO) == []


def test_every_stage_package_declares_what_it_offers():
    assert packages_without_all(REPO) == []
    top = sorted(p.name for p in (REPO / "pipeline").iterdir() if p.name != "__pycache__")
    stages = {s for layer in LAYERS for s in layer}
    assert {p.removesuffix(".py") for p in top} - {"__init__"} <= stages, top
    assert len(top) <= 14, top


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checks_catch_circles_upward_and_sideways_imports(tmp_path):
    for pkg in ("core", "inputs", "models", "evaluation", "mapping", "runner"):
        _write(tmp_path, f"pipeline/{pkg}/__init__.py", "")
    _write(tmp_path, "pipeline/__init__.py", "")
    _write(tmp_path, "flows/__init__.py", "")
    _write(tmp_path, "pipeline/inputs/raster.py", "def f():\n    from pipeline.models.base import Model\n")
    _write(tmp_path, "pipeline/models/base.py", "from pipeline.inputs.raster import f\nclass Model: ...\n")
    _write(
        tmp_path,
        "pipeline/evaluation/metrics.py",
        "import importlib\nimportlib.import_module('pipeline.mapping.cog')\n",
    )
    _write(tmp_path, "pipeline/mapping/cog.py", "")
    _write(
        tmp_path,
        "pipeline/runner/__init__.py",
        "from pipeline.core.lazy import lazy_exports\n__getattr__, __dir__ = lazy_exports(__name__, {'go': 'stages'})\n",
    )
    _write(tmp_path, "pipeline/runner/stages.py", "from pipeline.runner import go\n")
    _write(tmp_path, "pipeline/extras.py", "")
    got = layer_violations(tmp_path)
    assert any("pipeline.inputs.raster:2: imports pipeline.models.base (a higher layer" in g for g in got), got
    assert any(
        "pipeline.evaluation.metrics:2: imports pipeline.mapping.cog (stages evaluation and mapping" in g for g in got
    )
    assert any("pipeline.extras: not in a stage package" in g for g in got)
    assert not any(g.startswith("pipeline.models.base") for g in got)  # models may use inputs
    circles = import_circles(tmp_path)
    assert ["pipeline.inputs.raster", "pipeline.models.base"] in circles
    assert ["pipeline.runner", "pipeline.runner.stages"] in circles  # through the package's lazy table
    _write(tmp_path, "pipeline/mapping/cog.py", "x = 1\n" * (MAX_LINES + 1))
    assert long_modules(tmp_path) == [f"pipeline/mapping/cog.py: {MAX_LINES + 1} lines"]
    assert packages_without_all(tmp_path) == [
        f"pipeline/{p}/__init__.py" for p in sorted(("core", "evaluation", "inputs", "mapping", "models", "runner"))
    ]


def test_the_check_catches_a_reach_into_flows_or_bench(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "flows").mkdir()
    for stem in ("pipeline", "batch", "serve"):
        (tmp_path / "flows" / f"{stem}.py").write_text("import pipeline\n")
    (tmp_path / "pipeline" / "a.py").write_text("from flows.pipeline import x\n")
    (tmp_path / "pipeline" / "b.py").write_text(
        "def f():\n    try:\n        import bench.deep\n    except ImportError:\n        pass\n"
    )
    (tmp_path / "flows" / "batch.py").write_text("def f():\n    from flows.pipeline import y\n")
    got = upper_layer_violations(tmp_path)
    assert any("a.py:1: imports flows.pipeline.x at module level" in g for g in got), got
    assert any("b.py:2: hides an ImportError" in g for g in got)
    assert any("b.py:3: imports bench.deep" in g for g in got)
    assert any("flows/batch.py:2: imports flows.pipeline.y" in g for g in got)


@pytest.mark.parametrize(
    "module",
    [
        "pipeline.cli.main",
        "pipeline.runner",
        "pipeline.runner.context",
        "pipeline.runner.stages.prepare",
        "pipeline.runner.stages.fit",
        "pipeline.runner.stages.train",
        "pipeline.runner.stages.map",
        "pipeline.runner.stages.assess",
        "pipeline.runner.stages.report",
        "pipeline.runner.pipeline",
        "pipeline.runner.store",
        "pipeline.runner.batch",
    ],
)
def test_importing_the_library_loads_no_flow_nor_prefect(module):
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flows', 'bench', 'prefect', 'torch')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
