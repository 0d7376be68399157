"""The command line: flags, TOML files, exit codes, and a real ``python -m`` run."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pi_builder_middleware.testing import SimOutcome, SimulatorConfigError
from pi_builder_middleware.testing.cli import main, parse_provider_flag

from .conftest import MESSAGES


def test_main_prints_urls_and_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--provider", "a:5:0", "--provider", "b:1:0.5:rate_limit+timeout", "--duration", "0.5"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["a", "b"]
    assert all(line.split()[1].startswith("http://127.0.0.1:") for line in lines)
    assert "a: 0 request(s)" in err


def test_main_reads_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "scenario.toml"
    config.write_text('seed = 4\n[[providers]]\nname = "primary"\nbehaviour = { latency = 1 }\n')
    assert main(["--config", str(config), "--provider", "extra", "--duration", "0.1"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()] == ["primary", "extra"]
    assert "seed=4" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no providers"),
        (["--provider", "a:slow"], "must be numbers"),
        (["--provider", "a:1:2"], "behaviour.error_rate: must be between 0 and 1"),
        (["--provider", "a", "--provider", "a"], "duplicate provider names"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--duration", "0"]) == 2
    assert message in capsys.readouterr().err


def test_parse_provider_flag() -> None:
    provider = parse_provider_flag("b:200:0.3:rate_limit+stream_cut:0")
    assert provider.name == "b"
    assert provider.behaviour.latency.median_ms == 200
    assert provider.behaviour.error_rate == 0.3
    assert provider.behaviour.errors == {SimOutcome.RATE_LIMIT: 1.0, SimOutcome.STREAM_CUT: 1.0}
    assert parse_provider_flag("solo").behaviour.error_rate == 0
    with pytest.raises(SimulatorConfigError, match="expected NAME"):
        parse_provider_flag("a:1:2:3:4:5")


def test_python_dash_m_serves_until_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pi_builder_middleware.testing", "--provider", "a:1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        name, url = proc.stdout.readline().split()
        assert name == "a"
        resp = httpx.post(f"{url}/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=30)
        assert resp.status_code == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "a: 1 request(s) (success=1)" in err
