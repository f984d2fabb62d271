"""mkdocs hook (mkdocs.yml `hooks:`): README.md as the home page, and links out of docs/.

- ``docs/index.md``'s line ``--8<-- "../README.md"`` is replaced by the README, whose links are
  written for the repository root (``docs/sweeps.md``); they are rewritten to the site's pages,
  and links to ``README.md`` from docs/ point at the home page.
- A relative link to a file of the repository outside ``docs/`` (``benchmarks/README.md``,
  ``conf/hparams_search/optuna.yaml``) is not a page of the site: it must exist, or the build
  fails naming it; it becomes the repository path in code type (a link when ``repo_url`` is
  set). Every other link is left to mkdocs' own (strict) validation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$', re.M)
LINK = re.compile(r"(?<!!)\[([^\]\n]*)\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|#|/)", re.I)


def _rewrite(markdown: str, source: Path, page_dir: Path, docs: Path, repo_url: str) -> str:
    root = docs.parent

    def fix(m: re.Match) -> str:
        text, target = m.group(1), m.group(2)
        if EXTERNAL.match(target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve()
        if resolved == root / "README.md":  # the home page
            resolved = docs / "index.md"
        if resolved.is_relative_to(docs):  # a page (or file) of the site
            rel = Path(os.path.relpath(resolved, page_dir)).as_posix()
            return f"[{text}]({rel}{'#' + anchor if anchor else ''})"
        if not resolved.exists() or not resolved.is_relative_to(root):
            raise PluginError(f"{source.relative_to(root)}: link to {target!r}: no such file")
        rel = resolved.relative_to(root).as_posix()
        if repo_url:
            return f"[{text}]({repo_url.rstrip('/')}/blob/main/{rel})"
        if text.strip("`") == rel:
            return f"`{rel}`"
        return text if rel in text else f"{text} (`{rel}`)"

    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append(line if fenced else LINK.sub(fix, line))
    return "".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs = Path(config["docs_dir"]).resolve()
    source = Path(page.file.abs_src_path).resolve()
    repo_url = config.get("repo_url") or ""
    parts = INCLUDE.split(markdown)  # text, file, text, file, ..., text
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            included = (source.parent / part).resolve()
            if not included.is_file():
                raise PluginError(f"{page.file.src_path}: cannot include {part!r}: no such file")
            text = included.read_text(encoding="utf-8")
            out.append(_rewrite(text, included, source.parent, docs, repo_url))
        else:
            out.append(_rewrite(part, source, source.parent, docs, repo_url))
    return "".join(out)
