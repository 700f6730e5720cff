"""Type and range checks of config values, applied once when a config is built.

Each field of the config dataclasses in :mod:`odssam.config` declares its allowed values
next to it with :func:`checked` (a :class:`Rule` in the field's metadata); its type is
its annotation. :func:`odssam.config.from_dict`, the one place every YAML file, ``--set``
override, stored checkpoint config and ``odssam reproduce`` cell goes through, calls
:func:`check_value` on every value and :func:`check_consistency` on the built config, so
a bad value is refused before any work starts, in one line naming the key, the value and
what is allowed.

Type rules (YAML 1.1, which PyYAML reads, decides the Python type of a value):

* ``int``: integers only; ``true``/``false`` are refused, a float only when it is whole
  (``2.0`` -> 2).
* ``float``: integers and finite floats; a string that is a decimal number, such as
  ``1e-4``, ``1E-3`` or ``.5e-2`` (YAML 1.1 reads exponents without a dot or sign as
  text), is converted. ``.nan`` / ``.inf`` are refused.
* ``bool``: ``true``/``false`` only (YAML 1.1 also reads ``yes``/``no``/``on``/``off``).
* ``str``: text only; a number is refused (quote it: ``run_name: "001"``).
* ``X | None``: ``null`` (``~`` or an empty ``--set key=``) is accepted.
* ``tuple[X, ...]``: a list (as YAML writes it) whose every element passes the rule of
  ``X``; kept as a tuple, since a built config is immutable.

Ranges are bounded to what can run, with machine-independent limits so a config that
loads on one machine (e.g. stored in a checkpoint) loads on every other.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import re
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RULE_KEY = "odssam_rule"
# Seeds go to numpy's generators too, which take 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
# A decimal number as text: what YAML 1.1 leaves a string although it means a float (1e-4).
_DECIMAL = re.compile(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?")
_SHOW = reprlib.Repr()
_SHOW.maxstring = 60
_SHOW.maxother = 60
_SHOW.maxlist = 6
_SHOW.maxdict = 4
_SHOW.maxlevel = 2


def registry(module: str, name: str, extra: tuple = ()) -> Callable[[], tuple]:
    """Choices read lazily from ``module.name`` (a tuple or a dict's keys) plus ``extra``.

    Lazy, because the registries live in modules that import torch and the config module
    must stay importable without building anything.
    """

    def choices() -> tuple:
        return tuple(getattr(importlib.import_module(module), name)) + tuple(extra)

    choices.__qualname__ = f"{module}.{name}"
    return choices


@dataclass(frozen=True)
class Rule:
    """The allowed values of one config field (besides its annotated type).

    Attributes:
        at_least / above / at_most: Inclusive lower, exclusive lower, inclusive upper bound.
        multiple_of: The value must be a multiple of this.
        odd: The value must be odd.
        choices: The allowed values, or a function returning them (a lazy registry).
        nonempty: A string (or a list) must not be empty.
    """

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    multiple_of: int | None = None
    odd: bool = False
    choices: tuple | Callable[[], tuple] | None = None
    nonempty: bool = False

    def allowed_choices(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices

    def describe(self) -> str:
        """What is allowed, in words: ``an integer >= 1 and <= 4096, a multiple of 16``."""
        parts = []
        if self.above is not None:
            parts.append(f"> {_number(self.above)}")
        if self.at_least is not None:
            parts.append(f">= {_number(self.at_least)}")
        if self.at_most is not None:
            parts.append(f"<= {_number(self.at_most)}")
        words = " and ".join(parts)
        if self.multiple_of:
            words += f"{', ' if words else ''}a multiple of {self.multiple_of}"
        if self.odd:
            words += f"{', ' if words else ''}odd"
        if self.nonempty:
            words += f"{', ' if words else ''}not empty"
        return words

    def allows(self, value: Any) -> bool:
        """Whether ``value`` (already of the field's type) is allowed."""
        choices = self.allowed_choices()
        if choices is not None:
            return value in choices
        if isinstance(value, (int, float)) and (
            (self.above is not None and not value > self.above)
            or (self.at_least is not None and value < self.at_least)
            or (self.at_most is not None and value > self.at_most)
            or (self.multiple_of and value % self.multiple_of)
            or (self.odd and value % 2 == 0)
        ):
            return False
        return not (self.nonempty and value == "")


def _number(bound: float) -> str:
    """A bound as written in a config: ``1000000``, ``0.5``, ``1e-06``."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def checked(default: Any = dataclasses.MISSING, **rule: Any) -> Any:
    """A dataclass field with ``default`` whose values must pass ``Rule(**rule)``."""
    return field(default=default, metadata={RULE_KEY: Rule(**rule)})


def seed_field(default: int = 0) -> Any:
    """A seed field: an integer in 0 .. :data:`MAX_SEED`."""
    return checked(default, at_least=0, at_most=MAX_SEED)


class ValueProblem(Exception):
    """A value failing its type or rule: ``expected`` says what is allowed."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def show(value: Any) -> str:
    """A short one-line repr of a config value, safe for huge or self-referencing values."""
    return _SHOW.repr(value)


def coerce(value: Any, kind: Any, rule: Rule | None = None) -> Any:
    """``value`` as type ``kind`` (see the module docstring), checked against ``rule``.

    Raises:
        ValueProblem: Saying what is allowed.
    """
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        try:
            return coerce(value, inner, rule)
        except ValueProblem as problem:
            raise ValueProblem(f"{problem.expected}, or null") from None
    if origin is tuple:
        element = typing.get_args(kind)[0]  # tuple[X, ...]
        if not isinstance(value, (list, tuple)):
            raise ValueProblem(f"a list, each element {describe(element, rule)}")
        if rule is not None and rule.nonempty and not value:
            raise ValueProblem(f"a non-empty list, each element {describe(element, rule)}")
        try:
            return tuple(coerce(item, element, rule) for item in value)
        except ValueProblem as problem:
            raise ValueProblem(f"a list, each element {problem.expected}") from None
    converted = _as_type(value, kind)
    if converted is None or (rule is not None and not rule.allows(converted)):
        raise ValueProblem(describe(kind, rule))
    return converted


def describe(kind: Any, rule: Rule | None) -> str:
    """What a scalar field of type ``kind`` allows: ``an integer >= 1``, ``one of a, b``."""
    choices = rule.allowed_choices() if rule is not None else None
    if choices is not None:
        return f"one of {', '.join(map(str, choices))}"
    name = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[kind]
    words = rule.describe() if rule is not None else ""
    return f"{name} {words}" if words else name


def _as_type(value: Any, kind: Any) -> Any:
    """``value`` converted to ``kind`` by the module's type rules, or ``None`` if it is not one."""
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is int:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return None
    if kind is float:
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            value = float(value.strip().replace("_", ""))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        value = float(value)
        return value if math.isfinite(value) else None
    if kind is str:
        return value if isinstance(value, str) else None
    raise TypeError(f"config fields of type {kind!r} have no check")  # a programming error


def check_value(cls: type, name: str, value: Any, kind: Any) -> Any:
    """Field ``name`` of dataclass ``cls`` set to ``value``: the converted value.

    Raises:
        ValueProblem: Saying what is allowed.
    """
    rule = _rules(cls).get(name)
    return coerce(value, kind, rule)


@functools.cache
def _rules(cls: type) -> dict[str, Rule]:
    return {f.name: f.metadata[RULE_KEY] for f in dataclasses.fields(cls) if RULE_KEY in f.metadata}


def check_consistency(config: Any) -> list[str]:
    """Problems between fields of a built :class:`~odssam.config.ExperimentConfig`, ``ModelConfig``
    or ``PromptEncoderConfig`` (other sections have no cross-field rules).

    Sections are recognised by their fields, so this module does not import :mod:`odssam.config`
    (which imports it).
    """
    experiment = config if hasattr(config, "train") and hasattr(config, "model") else None
    model = experiment.model if experiment is not None else config
    prompt_encoder = getattr(model, "prompt_encoder", model)
    problems = _prompt_encoder_problems(prompt_encoder) if hasattr(prompt_encoder, "odconv") else []
    if experiment is not None:
        problems += _training_problems(experiment)
    return problems


def _prompt_encoder_problems(pcfg: Any) -> list[str]:
    problems = []
    where = "config key model.prompt_encoder."
    if pcfg.use_ssm and pcfg.ssm.num_layers < 1:
        problems.append(f"{where}ssm.num_layers: got {pcfg.ssm.num_layers}; expected >= 1 when use_ssm is on")
    if pcfg.use_odconv and pcfg.odconv.num_layers < 1:
        problems.append(f"{where}odconv.num_layers: got {pcfg.odconv.num_layers}; expected >= 1 when use_odconv is on")
    if pcfg.ssm.dt_min > pcfg.ssm.dt_max:
        problems.append(f"{where}ssm.dt_min: got {pcfg.ssm.dt_min}; expected <= ssm.dt_max ({pcfg.ssm.dt_max})")
    return problems


def _training_problems(config: Any) -> list[str]:
    problems = []
    tcfg = config.train
    if tcfg.full_resolution_loss and tcfg.loss_resolution == "label":
        problems.append(
            "config key train.full_resolution_loss: got true; the deprecated switch means "
            "loss_resolution: input and cannot be combined with train.loss_resolution: label"
        )
    if tcfg.dice_weight == 0 and tcfg.bce_weight == 0:
        problems.append("config keys train.dice_weight / bce_weight: got 0 / 0; expected at least one > 0")
    if config.data.val_count > 0 and tcfg.eval_every < 1:
        problems.append(
            f"config key train.eval_every: got {tcfg.eval_every}; expected >= 1 when data.val_count > 0 "
            "(validation selects best.pt)"
        )
    return problems
