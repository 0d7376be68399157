"""What honouring ``usage-based-routing-v2``'s rpm/tpm limits costs the middleware's pick on a LiteLLM router.

For 2 and 10 deployments of one group (``mock_response``, no network), each measured in the same run:

1. the installed strategy's pick (``async_get_available_deployment``, ``strategy="latency-optimal"``) on a
   ``simple-shuffle`` router (the filter only looks up the router's strategy) and on v2 routers without limits,
   with rpm limits and with tpm limits (the filter reads v2's counters; tpm also counts the request's tokens);
2. the filter alone (``UsageLimits.async_within``) on the same v2 candidates;
3. LiteLLM's own v2 pick (``LowestTPMLoggingHandler_v2.async_get_available_deployments``) on the same
   candidates: the same counter read and token count, plus its least-used choice.

µs per call, median of blocks. Run: python benchmarks/bench_usage_v2.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
import logging
from functools import partial
from typing import Any

from _common import aper_op_us

MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three sentences."}]
CASES = (
    ("simple-shuffle, no limits", "simple-shuffle", {}),
    ("v2, no limits", "usage-based-routing-v2", {}),
    ("v2, rpm limits", "usage-based-routing-v2", {"rpm": 10**9}),
    ("v2, tpm limits", "usage-based-routing-v2", {"tpm": 10**9}),
)


def model_list(n: int, limits: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "model_name": "g",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-fake", "mock_response": "ok", **limits},
            "model_info": {"id": f"d{i}"},
        }
        for i in range(n)
    ]


async def measure(n: int, quick: bool) -> None:
    import litellm
    from pi_builder_middleware.adapters.litellm import install

    ops, repeats = (300, 5) if quick else (2000, 9)
    print(f"\n{n} deployments: µs per call (median of {repeats} blocks of {ops})")
    print(f"{'router':28s} {'pick':>8s} {'filter':>8s} {'LiteLLM v2 pick':>16s} {'filter/v2':>10s}")
    for label, strategy, limits in CASES:
        router = litellm.Router(model_list=model_list(n, limits), routing_strategy=strategy, num_retries=0)
        handle = install(router, strategy="latency-optimal", seed=1)
        routing = handle.strategy
        assert routing is not None
        candidates = list(router.registry().deployments("g"))
        for _ in range(2 * n):  # each deployment serves once: the middleware knows them all
            await router.acompletion(model="g", messages=MESSAGES)

        pick_us = await aper_op_us(
            partial(routing.async_get_available_deployment, "g", MESSAGES, None, False, {}), ops, repeats
        )
        filter_us = await aper_op_us(
            partial(routing._usage.async_within, "g", candidates, MESSAGES, None), ops, repeats
        )
        selector = getattr(router, "lowesttpm_logger_v2", None)
        if selector is not None:
            v2 = partial(selector.async_get_available_deployments, "g", candidates, messages=MESSAGES)
            v2_us = await aper_op_us(v2, ops, repeats)
            print(f"{label:28s} {pick_us:8.1f} {filter_us:8.1f} {v2_us:16.1f} {filter_us / v2_us:10.2f}")
        else:
            print(f"{label:28s} {pick_us:8.1f} {filter_us:8.1f} {'-':>16s} {'-':>10s}")
        handle.uninstall()
        router.retire()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks (noisier)")
    args = parser.parse_args()
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    for n in (2, 10):
        asyncio.run(measure(n, args.quick))


if __name__ == "__main__":
    main()
