"""Name -> class registries, filled by decorators where the classes are defined.

Example:
    >>> from translate.registry import Registry
    >>> NETS = Registry("network")
    >>> @NETS.register("tiny")
    ... class Tiny: ...
    >>> NETS.get("tiny") is Tiny
    True

A recipe may also name a user's own class by dotted path (``mypkg.losses.MyTerm``); it is
imported on demand, so user code plugs in without changes to the toolkit.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Iterator

from .errors import TranslateError


class Registry:
    """A mapping from a short name to a class or factory."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Any] = {}

    def register(self, name: str | None = None) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            key = (name or obj.__name__).lower()
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> Any:
        key = name.lower()
        if key in self._entries:
            return self._entries[key]
        if "." in name:
            return import_dotted(name, self.kind)
        raise TranslateError(
            f"unknown {self.kind} {name!r}; expected one of {sorted(self._entries)} "
            f"or a dotted path to your own class"
        )

    def build(self, name: str, **kwargs: Any) -> Any:
        cls = self.get(name)
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise TranslateError(f"{self.kind} {name!r}: {err}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._entries


def import_dotted(path: str, kind: str = "object") -> Any:
    """Import ``package.module.Name`` and return ``Name``."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise TranslateError(f"cannot import {kind} {path!r}: {err}") from None
