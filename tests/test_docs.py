"""The docs cannot rot: the mkdocs site (user guide + API reference from the docstrings) builds
with ``--strict``, every relative link of README.md and docs/ reaches a file, and the lazy public
API of ``birdsweep/__init__.py`` names what its modules define."""

from __future__ import annotations

import ast
import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
NOT_A_FILE = re.compile(r"^([a-z][a-z0-9+.-]*:|#|/)", re.I)  # URLs, mailto:, anchors, absolute


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """Link targets outside fenced code blocks that are files relative to ``path``."""
    links, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            links += [t for t in LINK.findall(line) if not NOT_A_FILE.match(t)]
    return links


def test_every_relative_markdown_link_resolves_to_a_file():
    checked, broken = 0, []
    for md in markdown_files():
        for target in relative_links(md):
            checked += 1
            if not (md.parent / target.split("#")[0]).exists():
                broken.append(f"{md.relative_to(ROOT)}: ({target})")
    assert not broken, "broken links:\n" + "\n".join(broken)
    assert checked > 20  # the README and the docs do link to each other


def _class_docstring(path: Path, name: str) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return ast.get_docstring(node) or ""


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason="mkdocs / mkdocstrings-python not installed: pip install -e '.[dev]' installs them",
)
def test_docs_site_builds_strict_with_the_api_reference(tmp_path):
    site = tmp_path / "site"
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    api = html.unescape(re.sub(r"<[^>]+>", "", (site / "api" / "index.html").read_text()))
    summary = _class_docstring(ROOT / "birdsweep" / "model" / "sed.py", "SEDModel").splitlines()[0]
    assert summary and summary in api  # "Front end + timm backbone + head, ..."
    for name in ("MelFrontend", "run_kfold", "export_ensemble", "Ensemble", "macro_auc"):
        assert name in api
    home = (site / "index.html").read_text()
    assert "Set-up: two commands" in home  # the home page is the README
    assert 'href="sweeps/' in home  # its docs/ links point at the site's pages


def test_public_api_is_lazy_and_names_what_its_modules_export():
    init = (ROOT / "birdsweep" / "__init__.py").read_text(encoding="utf-8")
    tree = ast.parse(init)
    values = {
        t.id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name) and t.id in ("_EXPORTS", "__all__")
    }
    exports, public = values["_EXPORTS"], values["__all__"]
    assert public == ["__version__", *exports]
    for name, module in exports.items():
        path = ROOT / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        module_all = next(
            ast.literal_eval(n.value)
            for n in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(n, ast.Assign)
            and any(getattr(t, "id", "") == "__all__" for t in n.targets)
        )
        assert name in module_all, f"{module}.__all__ lacks {name}"
    # the telemetry switch comes before anything else, and the package imports nothing heavy
    telemetry = init.index('os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY"')
    assert telemetry < init.index("import importlib")
    code = (
        "import sys, birdsweep; heavy = [m for m in ('torch', 'mlflow', 'hydra', 'numpy') "
        "if m in sys.modules]; assert not heavy, heavy; "
        "assert birdsweep.macro_auc.__module__ == birdsweep._EXPORTS['macro_auc']; "
        "assert 'SEDModel' in dir(birdsweep)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
