"""The component configuration a declarative claim measures: `config` fixes values of the component's bench
config, `config_per_size` makes values grow with the size from a closed set of rules, so a claim file never
holds an expression to evaluate:

    config = { window = 64 }
    [claim.config_per_size]
    chunk = { power = 0.5, times = 1, round = "ceil" }   # chunk = ceil(1 * n ** 0.5), at least 1

Every key must already be in the component's bench config (a typo must not become a silently ignored
keyword), and a value must have the type the bench config gives it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

ROUNDINGS = {"nearest": lambda x: math.floor(x + 0.5), "floor": math.floor, "ceil": math.ceil}
RULE_FIELDS = ("power", "times", "round", "min")
MAX_POWER = 4.0  # n ** 4 already overflows an int64 count at n = 2 ** 16; nothing grows faster in a README


class ConfigFieldError(ValueError):
    """A bad `config` / `config_per_size` entry: `field` is its dotted name (e.g. 'config_per_size.chunk.power')."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class SizeRule:
    """value(n) = max(min, round(times * n ** power))."""

    power: float  # exponent of the size: 0.5 for a square root, 1 for linear
    times: float = 1.0  # factor in front of n ** power
    round: str = "nearest"  # how the value becomes an integer: nearest, floor or ceil
    min: int = 1  # the smallest value, so small sizes still give a usable setting

    def at(self, size: int) -> int:
        return max(self.min, int(ROUNDINGS[self.round](self.times * size ** self.power)))

    def describe(self) -> str:
        return f"{self.round}({self.times:g} * n^{self.power:g}), at least {self.min}"


def _bench_config(component: str) -> dict:
    from reprobench.registry import get

    return get(component).config(bench=True)


def _fits(new: Any, old: Any) -> bool:
    """Whether a TOML value may replace the bench config's value (bool, int, float and str keep their type)."""
    if isinstance(old, bool):
        return isinstance(new, bool)
    if isinstance(old, int):
        return isinstance(new, int) and not isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, (int, float)) and not isinstance(new, bool) and math.isfinite(new)
    if isinstance(old, str):
        return isinstance(new, str)
    return True


def _key(table: str, key: str, value: Any, config: dict, component: str) -> None:
    if key not in config:
        known = ", ".join(sorted(config)) or "none"
        raise ConfigFieldError(f"{table}.{key}", f"not a key of {component}'s bench config (its keys: {known})")
    if table == "config" and not _fits(value, config[key]):
        raise ConfigFieldError(f"{table}.{key}", f"expected a value of type {type(config[key]).__name__} like the "
                                                 f"bench config's {config[key]!r}, got {value!r}")


def check_config(value: Any, component: str) -> dict:
    """`config` as a dict of overrides, or ConfigFieldError."""
    if not isinstance(value, Mapping):
        raise ConfigFieldError("config", f"expected a table of bench-config values (e.g. {{ window = 64 }}), got {value!r}")
    config = _bench_config(component)
    for key, item in value.items():
        _key("config", key, item, config, component)
    return {key: tuple(item) if isinstance(config[key], tuple) and isinstance(item, list) else item
            for key, item in value.items()}


def check_config_per_size(value: Any, component: str) -> dict[str, SizeRule]:
    """`config_per_size` as key -> SizeRule, or ConfigFieldError."""
    example = '{ power = 0.5, times = 1, round = "ceil" }'
    if not isinstance(value, Mapping) or not value:
        raise ConfigFieldError("config_per_size", f"expected a table of rules, e.g. chunk = {example}, got {value!r}")
    config, rules = _bench_config(component), {}
    for key, rule in value.items():
        name = f"config_per_size.{key}"
        _key("config_per_size", key, rule, config, component)
        if isinstance(config[key], bool) or not isinstance(config[key], int):
            raise ConfigFieldError(name, f"the bench config's value is {config[key]!r}; a rule gives integers only")
        if not isinstance(rule, Mapping):
            raise ConfigFieldError(name, f"expected a rule table like {example}, got {rule!r}")
        unknown = [k for k in rule if k not in RULE_FIELDS]
        if unknown:
            raise ConfigFieldError(f"{name}.{unknown[0]}", f"unknown rule field; a rule has {', '.join(RULE_FIELDS)}")
        if "power" not in rule:
            raise ConfigFieldError(f"{name}.power", f"missing (the exponent of n, e.g. 0.5 for sqrt(n))")
        power, times = rule["power"], rule.get("times", 1.0)
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not abs(power) <= MAX_POWER:
            raise ConfigFieldError(f"{name}.power", f"expected a number in [-{MAX_POWER:g}, {MAX_POWER:g}], got {power!r}")
        if isinstance(times, bool) or not isinstance(times, (int, float)) or not (0 < times < math.inf):
            raise ConfigFieldError(f"{name}.times", f"expected a number > 0, got {times!r}")
        rounding, low = rule.get("round", "nearest"), rule.get("min", 1)
        if rounding not in ROUNDINGS:
            raise ConfigFieldError(f"{name}.round", f"expected one of {tuple(ROUNDINGS)}, got {rounding!r}")
        if isinstance(low, bool) or not isinstance(low, int) or low < 1:
            raise ConfigFieldError(f"{name}.min", f"expected an integer >= 1, got {low!r}")
        rules[key] = SizeRule(power=float(power), times=float(times), round=rounding, min=low)
    return rules


def config_at(component: str, fields: Mapping[str, Any], size: int, of: str | None = None) -> dict:
    """The bench config of `of` (default: the claim's component) with the claim's overrides at `size`; the
    overrides apply to the claim's own component only (an `against` component runs its bench config)."""
    from reprobench.registry import get

    target = of or component
    if target != component:
        return get(target).config(bench=True)
    overrides = dict(fields.get("config", {}))
    overrides.update({key: rule.at(size) for key, rule in fields.get("config_per_size", {}).items()})
    return get(component).config(overrides, bench=True)


def describe_config(fields: Mapping[str, Any], size: int) -> str:
    """`window=64, chunk=32 (ceil(1 * n^0.5), at least 1)` for a rule, or '' when the claim sets nothing."""
    parts = [f"{key}={value!r}" for key, value in fields.get("config", {}).items()]
    parts += [f"{key}={rule.at(size)} ({rule.describe()})" for key, rule in fields.get("config_per_size", {}).items()]
    return ", ".join(parts)
