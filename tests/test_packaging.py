"""A normal (non-editable) install contains the core, the plugins and the adapters under one namespace."""

from __future__ import annotations

from wheel_support import BuiltWheel


def test_wheel_maps_plugins_and_adapters_into_the_package(project_wheel: BuiltWheel) -> None:
    names = project_wheel.names
    assert "pi_builder_middleware/__init__.py" in names
    assert "pi_builder_middleware/py.typed" in names
    assert "pi_builder_middleware/plugins/strategies.py" in names
    assert "pi_builder_middleware/adapters/__init__.py" in names
    assert not any(n.startswith(("plugins/", "adapters/", "tests/")) for n in names)

    code = (
        "import pi_builder_middleware as p; "
        "assert p.__file__.startswith(sys.argv[1]), p.__file__; "
        "mw = p.Middleware(providers=[p.Provider(id='a'), p.Provider(id='b', cost_per_1k_input=1)], "
        "strategy='cost-optimal', load_entrypoints=False); "
        "print(mw.select().provider.id)"
    )
    assert project_wheel.run(code) == "a"
