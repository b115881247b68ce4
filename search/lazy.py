"""Classes that subclass Ray's, built on first access so that importing their module imports no Ray.

A module defines a builder per class and ends with `__getattr__ = lazy_classes(__name__, {...})`. The
class then resolves as `module.Name` on first access and its pickles load by reference (Tune pickles
schedulers and callbacks with the experiment, and a resumed search must find them again).
"""
from __future__ import annotations

from typing import Callable


def lazy_classes(module_name: str, builders: dict[str, Callable[[], type]]) -> Callable[[str], type]:
    """A module-level `__getattr__` that builds each named class once, under its module's name."""
    built: dict[str, type] = {}

    def module_getattr(name: str) -> type:
        if name not in builders:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        if name not in built:
            cls = builders[name]()
            cls.__module__, cls.__qualname__ = module_name, name
            built[name] = cls
        return built[name]

    return module_getattr
