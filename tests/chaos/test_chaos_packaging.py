"""A normal (non-editable) wheel ships the simulator, the chaos engine, its scenarios and the pi-builder command."""

from __future__ import annotations

from wheel_support import BuiltWheel


def test_wheel_has_the_chaos_package_scenarios_and_console_script(project_wheel: BuiltWheel) -> None:
    names = project_wheel.names
    entry_points = project_wheel.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert "pi_builder_middleware/tools/cli.py" in names
    assert "pi_builder_middleware/tools/chaos/runner.py" in names
    assert "pi_builder_middleware/testing/simulator.py" in names
    for scenario in ("outage", "brownout", "rate-limit", "flapping", "slow-ttft", "cost-vs-reliability", "all-down"):
        assert f"pi_builder_middleware/tools/chaos/scenarios/{scenario}.toml" in names
    assert "pi-builder = pi_builder_middleware.tools.cli:main" in entry_points

    code = (
        "from pi_builder_middleware.tools.chaos import builtin_scenarios, resolve_scenario; "
        "assert str(next(iter(builtin_scenarios().values()))).startswith(sys.argv[1]); "
        "print(resolve_scenario('outage').name)"
    )
    assert project_wheel.run(code) == "outage"
