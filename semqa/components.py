"""Named registries of buildable components, chosen by the ``type`` of a typed options model.

BasicSR's pattern (``basicsr/utils/registry.py``): each architecture or loss registers itself
under a name with a decorator, and one builder makes it from its options, so adding an
architecture is one decorated class and one ``Literal`` entry in its options model, never a
new branch in the trainer.

Examples
--------
>>> ACTIVATIONS = Registry("activation")
>>> @ACTIVATIONS.register("double")
... def double(x):
...     return 2 * x
>>> ACTIVATIONS.get("double")(3)
6
>>> ACTIVATIONS.names()
['double']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Registry:
    """Name → class or function, for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a class or function under ``name`` (each name once)."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> Any:
        """The component registered as ``name``; a ``KeyError`` lists the known names."""
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def build(self, name: str, options: Mapping[str, Any]) -> Any:
        """Call the component with the entries of ``options`` its signature accepts."""
        factory = self.get(name)
        accepted = inspect.signature(factory).parameters
        return factory(**{k: v for k, v in options.items() if k in accepted})
