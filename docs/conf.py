"""Sphinx configuration of the parallelizer reference (``make docs``)."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # document this checkout, installed or not

from parallelizer import __version__  # noqa: E402

project = "parallelizer"
author = "parallelizer developers"
copyright = "parallelizer developers"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings
    "sphinx.ext.viewcode",
    "myst_parser",  # the Markdown pages (and README.md)
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

# Docstrings: Google style; the signature shows the types, the text the meaning.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_mock_imports = ["mpi4py"]  # the reference builds without MPI

myst_heading_anchors = 3  # README's [links](#sections)

html_theme = "furo"
html_title = f"parallelizer {release}"


# README.md is the guide's front page (index.md includes it). Its links to
# files of the repository point, in the HTML, at the examples page instead.
_EXAMPLE_LINK = re.compile(r"\]\(examples/(\w+)\.(?:py|sh|ipynb)\)")
_BENCHMARK_LINK = re.compile(r"\[`(benchmarks/[\w.]+)`\]\(benchmarks/[\w.]+\)")


def _readme_links(app: Any, relative_path: Any, parent_docname: str, content: list[str]) -> None:
    if os.path.basename(str(relative_path)) != "README.md" or parent_docname != "index":
        return
    text = _EXAMPLE_LINK.sub(lambda match: f"](#example-{match.group(1)})", content[0])
    text = _BENCHMARK_LINK.sub(r"`\1` in the repository", text)
    content[0] = text


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension hook of this configuration."""
    app.connect("include-read", _readme_links)
    return {"parallel_read_safe": True}
