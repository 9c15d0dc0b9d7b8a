"""The registry of generator architectures (:class:`semqa.components.Registry`)."""

from semqa.components import Registry

#: Generator architectures by name; each module registers its network class.
ARCHS = Registry("generator architecture")
