"""Building the wrappers: providers from keys, a shared middleware, and errors that say what to fix."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableLambda
from lc_fakes import ScriptedChat
from pi_builder_middleware.adapters.langchain import (
    HealthAwareChatModel,
    HealthAwareFallbacks,
    HealthAwareModelMiddleware,
)

from pi_builder_middleware import ConfigError, Middleware, Provider


def models(*keys):
    return {k: ScriptedChat(key=k) for k in keys}


@pytest.mark.parametrize("front_end", [HealthAwareFallbacks, HealthAwareChatModel])
def test_builds_a_middleware_from_the_keys(front_end):
    llm = front_end(
        models("x", "y"), failover="aggressive", providers=[Provider(id="y", quality=0.9, capabilities={"tools"})]
    )
    assert list(llm.middleware.providers) == ["x", "y"]
    assert llm.middleware.providers["y"].capabilities == frozenset({"tools"})
    assert llm.middleware.failover.config.consecutive_failures == 2
    assert llm.invoke("q").content == "x says hi"  # default strategy (failover): priority, then key order


def test_default_order_is_the_key_order():
    assert HealthAwareFallbacks(models("second", "first")).invoke("q").content == "second says hi"


def test_shared_middleware_must_know_every_key():
    mw = Middleware([Provider(id="a"), Provider(id="b")])
    with pytest.raises(ConfigError, match=r"'c'.*'d'|'d'.*'c'") as info:
        HealthAwareFallbacks(models("a", "c", "d"), middleware=mw)
    assert info.value.field == "HealthAwareFallbacks.middleware"


def test_shared_middleware_may_know_more_providers_but_routes_only_to_the_keys():
    mw = Middleware([Provider(id="other"), Provider(id="a"), Provider(id="b")], strategy="quality-optimal")
    llm = HealthAwareChatModel(models("a", "b"), middleware=mw)
    assert llm.invoke("q").content == "a says hi"  # "other" ranks first in mw but has no model here
    assert mw.health("a").successes == 1


@pytest.mark.parametrize(
    "extra", [{"strategy": "cost-optimal"}, {"failover": "aggressive"}, {"providers": [Provider(id="a")]}]
)
def test_settings_belonging_to_a_given_middleware_are_refused(extra):
    with pytest.raises(ConfigError, match="set it there"):
        HealthAwareFallbacks(models("a"), middleware=Middleware([Provider(id="a")]), **extra)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"models": {}}, "HealthAwareFallbacks.models"),
        ({"models": {"a": "not a model"}}, "HealthAwareFallbacks.models['a']"),
        ({"models": models("a"), "providers": [Provider(id="zzz")]}, "HealthAwareFallbacks.providers"),
        ({"models": models("a"), "providers": {"a": Provider(id="b")}}, "HealthAwareFallbacks.providers['a']"),
        ({"models": models("a"), "first_chunk_timeout_s": 0}, "HealthAwareFallbacks.first_chunk_timeout_s"),
        ({"models": models("a"), "strategy": "no-such-strategy"}, "strategy"),
        ({"models": models("a"), "route": {"timeout_s": 1}}, "HealthAwareFallbacks.route"),
    ],
)
def test_bad_configuration_raises_config_error_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        HealthAwareFallbacks(**kwargs)
    assert info.value.field.startswith(field)


def test_provider_fields_per_key_as_a_dict():
    llm = HealthAwareFallbacks(models("a", "b"), providers={"b": {"quality": 0.8, "cost_per_1k_output": 2.0}})
    assert llm.middleware.providers["b"].cost_per_1k_output == 2.0


def test_tokens_of_a_chain_are_counted_once():
    """A chain (prompt | model | parser) as a 'model', and a wrapper inside a wrapper."""
    inner = HealthAwareChatModel(models("a"))
    chain = RunnableLambda(lambda text: [("user", text)]) | ScriptedChat(key="c") | RunnableLambda(lambda m: m.content)
    outer = HealthAwareFallbacks({"nested": inner, "chain": chain})
    assert outer.invoke("q").content == "a says hi"
    assert (outer.middleware.health("nested").tokens_in, outer.middleware.health("nested").tokens_out) == (7, 3)

    outer.middleware.failover.record("nested", False)  # make "chain" preferred by ejecting "nested"
    for _ in range(10):
        outer.middleware.failover.record("nested", False)
    assert outer.invoke("q") == "c says hi"
    assert (outer.middleware.health("chain").tokens_in, outer.middleware.health("chain").tokens_out) == (7, 3)


def test_every_entry_point_checks_its_arguments_the_same_way():
    """The two wrappers and the agent middleware share one set of constructor checks, each naming itself."""
    for entry in (HealthAwareFallbacks, HealthAwareChatModel, HealthAwareModelMiddleware):
        for kwargs, field in (
            ({"models": {"": ScriptedChat(key="a")}}, "models"),
            ({"models": models("a"), "max_wait_s": -1}, "max_wait_s"),
            ({"models": models("a"), "route": "fast"}, "route"),
            ({"models": models("a"), "hedge": "yes"}, "hedge"),
        ):
            with pytest.raises(ConfigError) as info:
                entry(**kwargs)
            assert info.value.field == f"{entry.__name__}.{field}"
