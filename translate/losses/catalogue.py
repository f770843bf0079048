"""The list of every registered loss term, for ``translate losses`` and the README table.

>>> rows = catalogue()
>>> {"name", "class", "parameters", "requirement", "meaning", "formula", "reference"} <= set(rows[0])
True
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Dict, List

from .base import LOSSES

#: the value shown for a constructor parameter without a default.
REQUIRED = "<required>"


def _import_all() -> None:
    """Import every module of ``translate.losses`` so that each ``@LOSSES.register`` has run."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{info.name}")


def _parameters(cls: Any) -> Dict[str, Any]:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # builtins or C extensions without a signature
        return {}
    return {
        name: REQUIRED if p.default is inspect.Parameter.empty else p.default
        for name, p in signature.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def _text(value: Any) -> str:
    return str(value) if value not in (None, "") else "-"


def catalogue() -> List[Dict[str, Any]]:
    """One entry per registered loss term, sorted by name.

    Each entry holds ``name`` (the recipe name), ``class`` (dotted path), ``parameters``
    (constructor argument -> default, :data:`REQUIRED` when there is none), ``requirement``
    (what the data must provide), ``meaning`` (the first docstring line), ``formula`` and
    ``reference`` (``"-"`` when the term gives none).
    """
    _import_all()
    rows = []
    for name, cls in LOSSES.items():
        # the class's own docstring: getdoc would inherit Term's and hide an undocumented term
        doc = inspect.cleandoc(cls.__doc__) if isinstance(getattr(cls, "__doc__", None), str) else ""
        rows.append({
            "name": name,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "parameters": _parameters(cls),
            "requirement": _text(getattr(cls, "requirement", None)),
            "meaning": _text(doc.strip().splitlines()[0] if doc.strip() else None),
            "formula": _text(getattr(cls, "formula", None)),
            "reference": _text(getattr(cls, "reference", None)),
        })
    return rows


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def catalogue_markdown() -> str:
    """A markdown table ``name | formula | requirement | reference`` with one row per term."""
    lines = ["| name | formula | requirement | reference |", "| --- | --- | --- | --- |"]
    for row in catalogue():
        cells = [f"`{row['name']}`", f"`{_cell(row['formula'])}`" if row["formula"] != "-" else "-",
                 _cell(row["requirement"]), _cell(row["reference"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
