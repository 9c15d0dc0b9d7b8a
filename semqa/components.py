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


#: The two files every network is stored as: safetensors weights (no pickle) and its typed options.
WEIGHTS_FILE = "weights.safetensors"
ARCH_FILE = "arch_config.json"


def save_network(network: Any, options: Any, folder: Any) -> tuple[Any, Any]:
    """Write ``network``'s float32 CPU weights (``WEIGHTS_FILE``) and its options model as JSON
    (``ARCH_FILE``) into ``folder``, the pair :func:`load_network` reads; returns both paths."""
    from pathlib import Path

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").float().contiguous() for k, v in network.state_dict().items()}
    weights, arch = folder / WEIGHTS_FILE, folder / ARCH_FILE
    save_file(state, str(weights))
    arch.write_text(options.model_dump_json(indent=2) + "\n")
    return weights, arch


def load_network(weights: Any, arch_file: Any, options_model: type, build: Callable[[Any], Any], kind: str) -> tuple[Any, Any, str]:
    """Rebuild a network from its architecture JSON and fill in safetensors weights; never unpickles.

    Returns ``(network, options, weights digest)``; a missing file, an invalid architecture or
    weights that do not fit it are one-line :class:`~semqa.errors.InputError`\\ s naming ``kind``.
    """
    from pathlib import Path

    from safetensors.torch import load_file

    from semqa.errors import InputError
    from semqa.io.digests import file_digest

    weights, arch_file = Path(weights), Path(arch_file)
    for p in (weights, arch_file):
        if not p.is_file():
            raise InputError(f"{kind} file not found: {p}")
    try:
        options = options_model.model_validate_json(arch_file.read_text())
    except ValueError as exc:
        raise InputError(f"invalid {kind} architecture file {arch_file}: {exc}") from None
    network = build(options)
    try:
        network.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # safetensors and load_state_dict raise several types
        raise InputError(f"weights {weights.name} do not fit the {kind} architecture: {exc}") from None
    return network, options, file_digest(weights)
