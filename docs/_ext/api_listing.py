"""The ``api-listing`` directive: one autodoc entry per name of a module's ``__all__``, so that every public name
appears in the API reference with its signature and docstring, names added later included.

In a Markdown page (``:shown-in:``: objects already described under that module's ``__all__`` are shown again in
full, but not indexed twice)::

    ```{api-listing} returnn_ls.nn
    :shown-in: returnn_ls
    ```
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent


def public_objects(module_name: str) -> dict[str, object]:
    """:return: name -> object for ``module_name.__all__``, sorted case-insensitively (a name that is not defined
    is reported as a warning, an error under ``-W``)"""
    module = importlib.import_module(module_name)
    out = {}
    for name in sorted(module.__all__, key=str.lower):
        if hasattr(module, name):
            out[name] = getattr(module, name)
        else:
            logger.warning("api-listing: %r is in %s.__all__ but not defined", name, module_name)
    return out


def autodoc_lines(module_name: str, shown_in: str | None = None) -> list[str]:
    """:return: the lines of one MyST ``eval-rst`` block (autodoc writes reST) with an autodoc directive for every
    name in ``module_name.__all__``"""
    seen = {id(obj) for obj in public_objects(shown_in).values()} if shown_in else set()
    lines = ["```{eval-rst}"]
    for name, obj in public_objects(module_name).items():
        target = f"{module_name}.{name}"
        opts = ["   :no-index:"] if id(obj) in seen else []
        if inspect.ismodule(obj):
            if opts or obj.__name__ != target:
                lines += [f".. py:data:: {target}", *opts, "", f"   The module :mod:`{obj.__name__}`.", ""]
            if not opts:
                lines += [f".. automodule:: {obj.__name__}", "   :members:", ""]
        elif inspect.isclass(obj):
            lines += [f".. autoclass:: {target}", "   :members:", *opts, ""]
        elif callable(obj):
            lines += [f".. autofunction:: {target}", *opts, ""]
        else:
            lines += [f".. autodata:: {target}", "   :no-value:", *opts, ""]
    return lines + ["```"]


class ApiListing(SphinxDirective):
    """Expands to the autodoc entries of one module's ``__all__``."""

    required_arguments = 1
    option_spec = {"shown-in": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        lines = autodoc_lines(self.arguments[0], self.options.get("shown-in"))
        self.state.nested_parse(StringList(lines, source=f"api-listing of {self.arguments[0]}"), 0, container)
        return container.children


FIELD = re.compile(r"^:(param|type|return|returns|rtype|raises?)\b[^:]*:")


def indent_field_bodies(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """Make the field lists of this project's docstrings valid reST.

    The docstrings continue a field (``:param x:``, ``:return:``) on the next line without indenting it, as
    RETURNN's do, and may follow a field list with a paragraph (``Example: ...``) without a blank line; reST reads
    both as the end of the field list ("Field list ends without a blank line"). A line at the field's own column
    right after a field line is indented as its continuation; one after an indented continuation starts a new
    paragraph (a blank line is put before it).
    """
    out: list[str] = []
    in_field = prev_indented = False
    for line in lines:
        indented = line.startswith(" ")
        if not line.strip():
            in_field = False
        elif FIELD.match(line):
            in_field = True
        elif in_field and not indented:
            if prev_indented:
                out.append("")
                in_field = False
            else:
                line = "   " + line
        out.append(line)
        prev_indented = indented
    lines[:] = out


def pages_with_listings(app: Sphinx, env: object, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """:return: the pages with an ``api-listing``, read again on every build: they depend on the Python sources,
    which Sphinx does not watch"""
    return [name for name in env.found_docs if "api-listing" in (HERE.parent / f"{name}.md").read_text("utf-8")]


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the directive and the docstring fix-up."""
    app.add_directive("api-listing", ApiListing)
    app.connect("env-get-outdated", pages_with_listings)
    app.connect("autodoc-process-docstring", indent_field_bodies)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
