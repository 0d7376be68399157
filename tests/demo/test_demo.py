"""The README's main command: a short demo run over real HTTP, LiteLLM and LangChain."""

from __future__ import annotations

import logging
import re

from pi_builder_middleware.tools.demo import main


def test_demo_runs_traffic_through_both_frameworks_and_summarises(capsys):
    assert main(["--duration", "8", "--rate", "8", "--no-live"]) == 0
    out = capsys.readouterr().out
    assert "summary" in out
    for provider in ("openai-fast", "anthropic-solid", "local-cheap"):
        assert provider in out
    total = re.search(r"(\d+) requests, (\d+) failed, (\d+) alerts\.", out)
    assert total is not None
    requests, failed = int(total.group(1)), int(total.group(2))
    assert requests >= 30  # ~8 req/s for 8 s
    assert failed <= requests // 10  # the outage window is absorbed by failover
    assert re.search(r"litellm\s+│\s+\d+", out) and re.search(r"langchain\s+│\s+\d+", out)
    assert "sk-" not in out


def test_demo_with_a_chaos_scenario(capsys):
    package = logging.getLogger("pi_builder_middleware")
    level = package.level
    assert main(["--scenario", "outage", "--duration", "4", "--rate", "6", "--no-live"]) == 0
    assert "alpha" in capsys.readouterr().out
    assert package.level == level  # quiet while the view shows alerts, the caller's logging back afterwards


def test_bad_arguments_exit_2_with_a_message(capsys, tmp_path):
    assert main(["--duration", "-1"]) == 2
    assert "--duration and --rate must be > 0" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[load]\nduration_s = 5\nrate_rps = -3\n[[providers]]\nname = "a"\n')
    assert main(["--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad --scenario" in err and "rate_rps" in err
