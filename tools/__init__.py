"""Tools built on the library: the chaos benchmark (:mod:`.chaos`), the live demo (:mod:`.demo`) and the
``pi-builder`` command line (:mod:`.cli`).

The top layer: may import the core, the plugins, the adapters and :mod:`pi_builder_middleware.testing`;
nothing below imports it. Importing this package imports none of its subpackages.
"""

__all__: list[str] = []
