"""Layers run one way: ``bench`` and ``flows`` use ``pipeline``, never the reverse.

``pipeline/`` may reach a higher layer only from inside a function of ``pipeline/cli/main.py``
(its documented dispatch points, ``SUBCOMMAND_MODULES`` and ``BENCHMARKS``), and never
behind an ``except ImportError``. ``flows/pipeline.py`` and ``flows/batch.py`` (and
``flows/serve.py``) do not import each other's modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UPPER = ("flows", "bench")


def _imports(node: ast.AST) -> list[tuple[str, int]]:
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out += [(a.name, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.append((n.module, n.lineno))
        elif (
            isinstance(n, ast.Call)
            and getattr(n.func, "attr", getattr(n.func, "id", "")) in ("import_module", "__import__")
            and n.args
            and isinstance(n.args[0], ast.Constant)
        ):
            out.append((str(n.args[0].value), n.lineno))
    return out


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


def layer_violations(root: Path) -> list[str]:
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
        if path.name != "cli.py":
            bad += [f"{rel}:{line}: imports {name}" for name, line in _imports(tree) if _top(name) in UPPER]
    flows = {p.stem: p for p in (root / "flows").glob("*.py")}
    apart = {"pipeline": {"batch", "serve"}, "batch": {"pipeline"}, "serve": {"pipeline"}}
    for stem, others in apart.items():
        tree = ast.parse(flows[stem].read_text())
        for name, line in _imports(tree):
            if name in {f"flows.{o}" for o in others}:
                bad.append(f"flows/{stem}.py:{line}: imports {name}")
    return bad


def test_pipeline_never_imports_flows_or_bench():
    assert layer_violations(REPO) == []


def test_the_check_catches_a_violation(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "flows").mkdir()
    for stem in ("pipeline", "batch", "serve"):
        (tmp_path / "flows" / f"{stem}.py").write_text("import pipeline\n")
    (tmp_path / "pipeline" / "a.py").write_text("from flows.pipeline import x\n")
    (tmp_path / "pipeline" / "b.py").write_text(
        "def f():\n    try:\n        import bench.deep\n    except ImportError:\n        pass\n"
    )
    (tmp_path / "flows" / "batch.py").write_text("def f():\n    from flows.pipeline import y\n")
    got = layer_violations(tmp_path)
    assert any("a.py:1: imports flows.pipeline at module level" in g for g in got)
    assert any("b.py:2: hides an ImportError" in g for g in got)
    assert any("b.py:3: imports bench.deep" in g for g in got)
    assert any("flows/batch.py:2: imports flows.pipeline" in g for g in got)


@pytest.mark.parametrize(
    "module", ["pipeline.cli.main", "pipeline.runner.run", "pipeline.runner.store", "pipeline.runner.batch"]
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
