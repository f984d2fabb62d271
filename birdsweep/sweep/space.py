"""Search spaces written in Hydra's override grammar, sampled with Optuna's define-by-run API.

``interval(a, b)`` / ``tag(log, interval(a, b))`` / ``int(interval(a, b))`` / ``range(a, b)``
/ ``choice(x, y)`` become Optuna distributions (parsed by Hydra's own override parser, see
:func:`_distribution`); anything else is a fixed override passed to every trial. A conditional
parameter is only sampled when another parameter has a given value (e.g. ``sampler.alpha``
when ``sampler=balanced``), which Optuna's samplers handle natively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


@dataclass(frozen=True)
class Conditional:
    """A parameter sampled only when ``when_key`` has the value ``when_value``."""

    name: str
    when_key: str
    when_value: str
    distribution: BaseDistribution


def _distribution(override: Override) -> BaseDistribution | str:
    """An Optuna distribution for a sweep override, the value text for a fixed one.

    ``interval(a, b)`` -> float (int when both ends are ints; ``tag(log, ...)`` = log scale);
    an integer ``range(a, b[, step])`` -> int with Hydra's exclusive stop; ``choice(...)`` and
    any other range (floats, shuffled) -> categorical over the values Hydra would sweep.
    """
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, RangeSweep) and not (value.shuffle or value.transformers):
        values = value.range()
        if isinstance(values, range) and len(values):
            return IntDistribution(min(values), max(values), step=abs(values.step))
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    if not choices:
        raise ValueError(f"{override.input_line}: the sweep has no values")
    return CategoricalDistribution(choices)


def _parse_one(line: str) -> tuple[str, BaseDistribution | str | None]:
    """``key=value`` -> (key, distribution | fixed value text | None for a delete)."""
    (override,) = OverridesParser.create().parse_overrides([line])
    if override.is_delete():  # ~key deletions: passed through as written
        return line, None
    return override.get_key_element(), _distribution(override)


class SearchSpace:
    """Sampled and fixed overrides of a sweep.

    Args:
        params: ``hydra.sweeper.params``: override key -> value in the override grammar.
        arguments: the command-line overrides (they win over ``params`` with the same key).
        conditional: ``hydra.sweeper.conditional_params``: key -> ``{when: other_key=value,
            space: <override grammar>}``.
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        arguments: Sequence[str] = (),
        conditional: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        entries: dict[str, BaseDistribution | str | None] = {}
        lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
        for line in lines:
            key, value = _parse_one(line)
            entries.pop(key, None)  # keep command-line order for the winner
            entries[key] = value
        self.distributions = {k: v for k, v in entries.items() if isinstance(v, BaseDistribution)}
        self.fixed = {k: v for k, v in entries.items() if isinstance(v, str)}
        self.deletes = [k for k, v in entries.items() if v is None]
        self.conditional: list[Conditional] = []
        for name, spec in (conditional or {}).items():
            when, space = spec.get("when"), spec.get("space")
            if not isinstance(when, str) or "=" not in when or space is None:
                raise ValueError(
                    f"hydra.sweeper.conditional_params.{name}: needs `when: <key>=<value>` and "
                    f"`space: <override grammar>`, got {dict(spec)}"
                )
            if name in entries:
                continue  # set on the command line or in params: not conditional any more
            when_key, when_value = (s.strip() for s in when.split("=", 1))
            _, dist = _parse_one(f"{name}={space}")
            if not isinstance(dist, BaseDistribution):
                raise ValueError(
                    f"hydra.sweeper.conditional_params.{name}.space: {space!r} is not a sweep "
                    "(use interval(...), choice(...) or range(...))"
                )
            self.conditional.append(Conditional(name, when_key, when_value, dist))

    def __repr__(self) -> str:
        names = list(self.distributions) + [c.name for c in self.conditional]
        return f"SearchSpace(sampled={names}, fixed={list(self.fixed)})"

    def suggest(self, trial: optuna.Trial) -> list[str]:
        """Sample every parameter for ``trial`` and return the trial's Hydra overrides.

        Args:
            trial: an asked trial (enqueued values are used when the trial has them).

        Returns:
            ``["key=value", ...]``: fixed overrides first, then sampled ones.
        """
        for name, dist in self.distributions.items():
            trial._suggest(name, dist)  # the generic form behind suggest_float/int/categorical
        for cond in self.conditional:
            current = trial.params.get(cond.when_key, self.fixed.get(cond.when_key))
            if current is not None and str(current) == cond.when_value:
                trial._suggest(cond.name, cond.distribution)
        out = [f"{k}={v}" for k, v in self.fixed.items()] + list(self.deletes)
        out += [f"{k}={v}" for k, v in trial.params.items()]
        return out
