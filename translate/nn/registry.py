"""The network registries, kept apart from ``translate.nn.__init__`` so that model modules can
register themselves without importing the package that imports them (no import cycle)."""

from __future__ import annotations

from ..registry import Registry

GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")
