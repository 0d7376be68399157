"""``pi-builder`` command line: argument errors, bad scenarios, delegation to the simulator and the demo."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from pi_builder_middleware.tools.cli import main


def test_bad_scenario_file_exits_2_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[load]\nduration_s = 10\nrate_rps = -3\n[[providers]]\nname = "a"\n'
        "[[providers.faults]]\nstart_s = 1\nerror_rate = 7\n"
    )
    assert main(["bench", "--scenario", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "load.rate_rps" in err and "providers[0].faults[0].error_rate" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_scenario_in_a_real_process_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[load]\nduration_s = 10\nrate_rps = 1\nconcurrency = 0\n[[providers]]\nname = "a"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pi_builder_middleware.tools.cli", "bench", "--scenario", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "load.concurrency" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_scenario_and_contender_exit_2(capsys):
    assert main(["bench", "--scenario", "nope"]) == 2
    assert "no built-in scenario 'nope'" in capsys.readouterr().err
    assert main(["bench", "--scenario", "outage", "--contenders", "litellm-shuffle", "nobody"]) == 2
    assert "unknown contender(s) nobody" in capsys.readouterr().err


def test_bad_duration_exits_2(capsys):
    assert main(["bench", "--duration", "0"]) == 2
    assert "--duration" in capsys.readouterr().err


def test_list_names_scenarios_and_contenders(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "cost-vs-reliability" in out and "pbm-langchain-failover" in out and "oracle" in out


def test_no_subcommand_prints_help(capsys):
    assert main([]) == 2
    assert "bench" in capsys.readouterr().out


def test_simulate_delegates_to_the_simulator_cli(capsys):
    assert main(["simulate", "--provider", "a:0:0", "--duration", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("a http://127.0.0.1:")


def test_simulate_errors_keep_the_simulators_exit_code(capsys):
    assert main(["simulate", "--provider", "a:x"]) == 2
    assert "--provider" in capsys.readouterr().err


def test_demo_is_imported_lazily_and_gets_the_arguments(monkeypatch):
    seen: list[list[str]] = []
    fake = types.ModuleType("pi_builder_middleware.tools.demo")
    fake.main = lambda args: seen.append(list(args)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pi_builder_middleware.tools.demo", fake)
    assert main(["demo", "--fast", "x"]) == 0
    assert seen == [["--fast", "x"]]


@pytest.mark.parametrize("module", ["pi_builder_middleware.tools.chaos", "pi_builder_middleware.tools.cli"])
def test_core_import_does_not_pull_chaos_or_frameworks(module):
    code = (
        "import sys, pi_builder_middleware; "
        f"assert {module!r} not in sys.modules; "
        "assert not any(m.split('.')[0] in ('litellm', 'langchain_core', 'matplotlib', 'rich') "
        "for m in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_chaos_import_does_not_pull_frameworks():
    code = (
        "import sys, pi_builder_middleware.tools.chaos, pi_builder_middleware.tools.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('litellm', 'langchain_core', 'langchain_openai', "
        "'matplotlib', 'rich', 'openai')]; assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
