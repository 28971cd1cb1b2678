"""The README's code examples run and reproduce the Kwant numbers they quote."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]


@pytest.mark.parametrize("block", re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S))
def test_readme_examples_run(block, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})


def test_reference_interface_reproduces_kwant(monkeypatch):
    import numpy as np

    import difftransport as dt

    monkeypatch.chdir(ROOT)
    ref = np.load("tests/data/strip_magnetic.npz")
    sample = dt.Sample(dt.strip(10), 24, spinful=True)
    disorder = dt.Disorder(potential=ref["V"][0], moments=ref["m"][0])
    model = dt.Model(energy=0.7, flux=0.03, rashba=0.2, exchange=0.4)
    assert abs(dt.conductance(sample, model, disorder) - ref["G"][0, 0, 1, 1]) < 1e-9


# ---------------------------------------------------------------------------------------------------------
# The repository is self-contained: every citation of a document resolves inside it.

_TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".json", ".rst", ".sh"}
_OUTSIDE = ("PHYSICS.md", "../shared", "shared/reference")
_DOC_ANCHOR = re.compile(r"docs/([\w.-]+\.md)#([\w-]+)")
_DOC_FILE = re.compile(r"docs/([\w.-]+\.md)\b")
_MD_LINK = re.compile(r"\]\(([\w.-]+\.md)?#([\w-]+)\)")  # [text](file.md#anchor) or [text](#anchor) inside docs/


def _repository_text_files():
    """Tracked files plus untracked files that git does not ignore, text files only."""
    import subprocess

    listed = []
    for args in (["ls-files"], ["ls-files", "--others", "--exclude-standard"]):
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        listed += out.splitlines()
    paths = sorted({ROOT / p for p in listed})
    return [p for p in paths if p.is_file() and (p.suffix in _TEXT_SUFFIXES or p.name in ("Makefile", "LICENSE"))]


def _slug(heading):
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    text = path.read_text()
    ids = set(re.findall(r"<a id=\"([\w-]+)\"></a>", text))
    ids |= {_slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}
    return ids


def test_no_reference_points_outside_the_repository():
    offending = []
    for path in _repository_text_files():
        if path == pathlib.Path(__file__).resolve():
            continue  # this test names the patterns it looks for
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(pattern in line for pattern in _OUTSIDE):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "\n".join(offending)


def test_every_docs_citation_resolves():
    docs = ROOT / "docs"
    anchors = {p.name: _anchors(p) for p in docs.glob("*.md")}
    broken = []
    for path in _repository_text_files():
        text = path.read_text(errors="replace")
        where = str(path.relative_to(ROOT))
        for name in _DOC_FILE.findall(text):
            if name not in anchors:
                broken.append(f"{where}: docs/{name} does not exist")
        for name, anchor in _DOC_ANCHOR.findall(text):
            if name in anchors and anchor not in anchors[name]:
                broken.append(f"{where}: docs/{name}#{anchor} has no such anchor")
        if path.parent == docs and path.suffix == ".md":
            for name, anchor in _MD_LINK.findall(text):
                name = name or path.name
                if name not in anchors:
                    broken.append(f"{where}: link to {name} (no such file in docs/)")
                elif anchor not in anchors[name]:
                    broken.append(f"{where}: link to {name}#{anchor} has no such anchor")
    assert not broken, "\n".join(broken)


def test_slug_matches_github():
    assert _slug("Recursive Green's function") == "recursive-greens-function"
    assert _slug("Transfer-matrix sweep (`method=\"transfer\"`)") == "transfer-matrix-sweep-methodtransfer"
    assert _slug("Anderson transition in 3D (transfer matrix, finite-size scaling)") == (
        "anderson-transition-in-3d-transfer-matrix-finite-size-scaling"
    )
