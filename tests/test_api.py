"""The public API: what users' code (experiments, benchmarks, the examples in the docs) may import, that every
exported name exists, and the position of PRNG keys in public signatures."""

import ast
import inspect
import pathlib
import re

import pytest

import difftransport as dt
from difftransport import runs, theory

ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBLIC_MODULES = {"difftransport", "difftransport.theory", "difftransport.runs"}
SCRIPTS = sorted((ROOT / "experiments").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _private_imports(tree: ast.AST) -> list[str]:
    """The modules (or names of ``from difftransport import _x``) an AST imports from the package beyond
    its public modules."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        else:
            continue
        found += [m for m in modules if m.split(".")[0] == "difftransport" and m not in PUBLIC_MODULES
                  and any(part.startswith("_") for part in m.split("."))]
    return found


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_import_only_the_public_api(path):
    assert _private_imports(ast.parse(path.read_text(), str(path))) == []


FROM = re.compile(r"\bfrom\s+(difftransport[\w.]*)\s+import\s+(\([^)]*\)|[^\n#;]+)")
IMPORT = re.compile(r"\bimport\s+(difftransport[\w.]*)")


def _private_in_text(text: str) -> list[str]:
    """The same check by regex, for code that need not parse (shell lines, fragments in markdown)."""
    private = lambda name: any(part.startswith("_") for part in name.split("."))
    bad = [m for m in IMPORT.findall(text) if private(m)]
    for module, names in FROM.findall(text):
        names = [n.split()[0] for n in names.strip("()").split(",") if n.strip()]
        bad += [f"{module}.{n}" for n in names if private(f"{module}.{n}")]
    return bad


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_examples_import_only_the_public_api(path):
    blocks = re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", path.read_text(), flags=re.S | re.M)
    assert [bad for block in blocks for bad in _private_in_text(block)] == []


def test_the_checker_sees_private_imports():
    tree = ast.parse("import difftransport._core.rgf\nfrom difftransport._runs import config\n"
                     "from difftransport import _cli, theory\nfrom difftransport.runs import run\nimport difftransport")
    assert _private_imports(tree) == ["difftransport._core.rgf", "difftransport._runs", "difftransport._cli"]
    text = ("python -c 'import difftransport._core.rgf'\nfrom difftransport._runs import config\n"
            "from difftransport import (\n    _cli,\n    theory as th,\n)\nfrom difftransport.runs import run\n")
    assert _private_in_text(text) == ["difftransport._core.rgf", "difftransport._runs.config", "difftransport._cli"]


@pytest.mark.parametrize("module", [dt, theory, runs], ids=lambda m: m.__name__)
def test_every_exported_name_exists(module):
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
    assert len(set(module.__all__)) == len(module.__all__)


def test_prng_keys_come_first():
    """A public function that draws random numbers takes its key (or keys) as the first positional argument,
    like ``jax.random``; an optional key of a fitting routine is keyword-only (the package docstring)."""
    wrong = []
    for module in (dt, theory, runs):
        for name in module.__all__:
            f = getattr(module, name)
            if inspect.isclass(f) or not callable(f):
                continue
            parameters = list(inspect.signature(f).parameters.values())
            for i, p in enumerate(parameters):
                if p.name in ("key", "keys") and not (i == 0 or p.kind is p.KEYWORD_ONLY):
                    wrong.append(f"{module.__name__}.{name}")
    assert wrong == []
