"""The typed hook caller: one PluginHost method per hookspec, with the hookspec's parameters."""

from __future__ import annotations

import inspect

from pi_builder_middleware import ErrorKind, Middleware, Outcome, Provider, hookimpl, hookspecs
from pi_builder_middleware.pluginmanager import PluginHost

SPECS = {name: getattr(hookspecs, name) for name in hookspecs.__all__ if name.startswith("pbm_")}


def test_every_hookspec_has_a_typed_method_with_its_parameters() -> None:
    assert len(SPECS) == 8
    for name, spec in SPECS.items():
        method = getattr(PluginHost, name.removeprefix("pbm_"))
        params = list(inspect.signature(method).parameters)[1:]  # without self
        assert params == list(inspect.signature(spec).parameters), name


def test_typed_methods_reach_the_plugins() -> None:
    seen: list[tuple[str, object]] = []

    class Recorder:
        @hookimpl
        def pbm_on_decision(self, decision: object) -> None:
            seen.append(("decision", decision))

        @hookimpl
        def pbm_on_outcome(self, outcome: Outcome, error_kind: ErrorKind | None) -> None:
            seen.append(("outcome", error_kind))

        @hookimpl(tryfirst=True)
        def pbm_classify_error(self, error: BaseException, provider: Provider) -> ErrorKind | None:
            return ErrorKind.RATE_LIMITED if isinstance(error, KeyError) else None

    mw = Middleware([Provider(id="a")], plugins=[Recorder()])
    decision = mw.select()
    mw.record(Outcome("a", False, 0.1, error=KeyError("x")))
    assert seen == [("decision", decision), ("outcome", ErrorKind.RATE_LIMITED)]
    assert mw.plugins.classify_error(ValueError("y"), mw.router.provider("a")) is not ErrorKind.RATE_LIMITED
