"""Sweep configs: YAML -> validated, frozen pydantic models (first stage of config -> cases -> ...).

A sweep names a phase (decode | mtp | prefill), the backends to run, the baseline they are compared
with, and axes whose cartesian product (with optional ``zip`` groups and ``where`` filters) becomes
the list of cases (``gdnbench.cases.expand``). ``per_sm`` overrides replace parts of the sweep on one
SM generation (``sm90``, ``sm100``, ...), so one file serves every GPU.

Bad input never produces a traceback: :func:`load_sweep` raises :class:`ConfigError`, whose message
is one line naming the file, the key path, what was expected and the allowed values.

Two checks need the expansion, and both run at load time so a bad config fails before anything is
measured or written. A config's size is bounded: the product of its axes times its backends (the
(case, backend) pairs before invalid combinations and ``where`` filters drop any) may not exceed
``max_pairs`` (default :data:`DEFAULT_MAX_PAIRS`; the environment variable ``GDNBENCH_MAX_PAIRS``
overrides both), and it is computed from the axes' lengths without building a case, so a config of
10^7 cases is refused at once with its count. Then every ``where`` filter is evaluated against the
cases: an expression that parses but cannot be evaluated (``batch / 0 > 1``, ``layout > 3``) is a
config error naming the filter and the first case it fails on, and the evaluator refuses sequence
repetition beyond :data:`WHERE_MAX_SEQUENCE` items, so ``'a' * 10**11`` never allocates.
"""

from __future__ import annotations

import ast
import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from gdnbench.vocab import BACKEND_NAMES, INPUT_DTYPES, LAYOUTS, PHASES, POOLS, STATE_DTYPES, TIMING_MODES
from gdnbench.where import parse_where as _parse_where

Phase = Literal[PHASES]  # type: ignore[valid-type]
Layout = Literal[LAYOUTS]  # type: ignore[valid-type]
StateDtype = Literal[STATE_DTYPES]  # type: ignore[valid-type]
InputDtype = Literal[INPUT_DTYPES]  # type: ignore[valid-type]
PoolKind = Literal[POOLS]  # type: ignore[valid-type]
TimingMode = Literal[TIMING_MODES]  # type: ignore[valid-type]

#: (linear_num_key_heads, linear_num_value_heads) at TP1, from the models' configs
#: (see shared reference notes, section 4). Both are sharded by tensor parallelism.
MODEL_HEADS: dict[str, tuple[int, int]] = {
    "qwen3-next-80b": (16, 32),
    "qwen3.5-397b": (16, 64),
    "qwen3.5-122b": (16, 64),
    "qwen3.5-35b": (16, 32),
    "qwen3.5-27b": (16, 48),
}
TP_SIZES = (1, 2, 4, 8)
PRESET_HELP = f"{', '.join(MODEL_HEADS)}, each optionally with /tp1, /tp2, /tp4 or /tp8"


def resolve_preset(name: str) -> tuple[int, int]:
    """``"qwen3-next-80b/tp4"`` -> (hk, hv) = (4, 8). Raises ValueError for an unknown preset."""
    model, _, tp_part = name.partition("/")
    tp = 1
    if tp_part:
        m = re.fullmatch(r"tp(\d+)", tp_part)
        tp = int(m.group(1)) if m else -1
    if model not in MODEL_HEADS or tp not in TP_SIZES:
        raise ValueError(f"unknown heads preset '{name}' (allowed: {PRESET_HELP})")
    hk, hv = MODEL_HEADS[model]
    return hk // tp, hv // tp


class StrictModel(BaseModel):
    """A config document's model: unknown keys rejected, immutable once validated, no type coercion
    (a YAML string is never read as a number). Every config model derives from it, the targets too."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class HeadsEntry(StrictModel):
    """One value of the ``heads`` axis, resolved: (hk, hv) and the preset it came from (or "")."""

    hk: int
    hv: int
    model: str = ""


class Axes(StrictModel):
    """Sweep axes. Every axis is a non-empty list; the sweep is their cartesian product."""

    batch: list[int] = Field(default=[1], min_length=1)
    heads: list[HeadsEntry] = Field(default=[HeadsEntry(hk=16, hv=32, model="qwen3-next-80b")], min_length=1)
    head_dim_k: list[int] = Field(default=[128], min_length=1)
    head_dim_v: list[int] = Field(default=[128], min_length=1)
    layout: list[Layout] = Field(default=["k_last"], min_length=1)
    state_dtype: list[StateDtype] = Field(default=["float32"], min_length=1)
    dtype: list[InputDtype] = Field(default=["bfloat16"], min_length=1)
    tokens: list[int] = Field(default=[1], min_length=1)
    seq_lens: list[list[int]] = Field(default=[[]], min_length=1)
    pool: list[PoolKind] = Field(default=["contiguous"], min_length=1)
    write_back: list[bool] = Field(default=[True], min_length=1)
    intermediate: list[bool] = Field(default=[False], min_length=1)
    tree: list[bool] = Field(default=[False], min_length=1)
    seed: list[int] = Field(default=[0], min_length=1)

    @field_validator("heads", mode="before")
    @classmethod
    def _resolve_heads(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # pydantic reports the type error
        out: list[Any] = []
        for i, entry in enumerate(value):
            if isinstance(entry, HeadsEntry):
                out.append(entry)
            elif isinstance(entry, str):
                try:
                    hk, hv = resolve_preset(entry)
                except ValueError as e:
                    raise ValueError(f"[{i}]: {e}") from None
                model = entry if "/" in entry else f"{entry}/tp1"
                out.append(HeadsEntry(hk=hk, hv=hv, model=model))
            elif (isinstance(entry, list) and len(entry) == 2
                  and all(isinstance(x, int) and not isinstance(x, bool) for x in entry)):
                hk, hv = entry
                if hk < 1 or hv < 1:
                    raise ValueError(f"[{i}]: head counts must be >= 1, got [{hk}, {hv}]")
                if hv % hk:
                    raise ValueError(f"[{i}]: hv={hv} is not a multiple of hk={hk} (GQA needs HV % HK == 0)")
                out.append(HeadsEntry(hk=hk, hv=hv))
            else:
                raise ValueError(
                    f"[{i}]: expected a preset name or an [hk, hv] pair of integers, got {entry!r} "
                    f"(presets: {PRESET_HELP})")
        return out

    @field_validator("batch", "head_dim_k", "head_dim_v", "tokens")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        for i, x in enumerate(value):
            if x < 1:
                raise ValueError(f"[{i}]: must be a positive integer, got {x}")
        return value

    @field_validator("seq_lens")
    @classmethod
    def _seq_lens(cls, value: list[list[int]]) -> list[list[int]]:
        for i, lens in enumerate(value):
            for j, x in enumerate(lens):
                if x < 1:
                    raise ValueError(f"[{i}][{j}]: sequence lengths must be positive, got {x}")
        return value


AXIS_NAMES: tuple[str, ...] = tuple(Axes.model_fields)  # the axes a config may sweep


class Timing(StrictModel):
    """How rows are timed. ``auto`` = ``graph`` on a GPU, ``cpu`` on a CPU."""

    mode: TimingMode = "auto"
    warmup: int = Field(3, ge=0, description="untimed launches (or graph replays) before sampling")
    min_samples: int = Field(10, ge=1)
    max_samples: int = Field(2000, ge=1)
    min_time_s: float = Field(0.1, ge=0)
    max_time_s: float = Field(2.0, gt=0)
    target_rel_noise: float = Field(0.005, gt=0, description="stop when the median's relative std. error is below")
    min_sets: int = Field(4, ge=1, description="graph mode: at least this many input sets per graph")
    l2_multiple: float = Field(4.0, ge=0, description="graph mode: input sets together exceed this many L2 sizes")
    max_sets: int = Field(1024, ge=1)

    @model_validator(mode="after")
    def _order(self) -> Timing:
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples ({self.max_samples}) < min_samples ({self.min_samples})")
        if self.max_time_s < self.min_time_s:
            raise ValueError(f"max_time_s ({self.max_time_s}) < min_time_s ({self.min_time_s})")
        return self


def _check_backends(names: list[str]) -> list[str]:
    for i, name in enumerate(names):
        if name not in BACKEND_NAMES:
            raise ValueError(f"[{i}]: unknown backend '{name}' (allowed: {', '.join(BACKEND_NAMES)})")
    if len(set(names)) != len(names):
        raise ValueError("a backend is listed twice")
    return names


class Override(StrictModel):
    """Replaces parts of the sweep on one SM generation. Axes given replace the base axes."""

    backends: list[str] | None = Field(default=None, min_length=1)
    axes: dict[str, Any] | None = None
    where: list[str] | None = None
    timing: Timing | None = None

    @field_validator("backends")
    @classmethod
    def _backends_known(cls, value: list[str] | None) -> list[str] | None:
        return value if value is None else _check_backends(value)

    @field_validator("axes")
    @classmethod
    def _axes_known(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in value or {}:
            if key not in AXIS_NAMES:
                raise ValueError(f"unknown axis '{key}' (allowed: {', '.join(AXIS_NAMES)})")
        return value


# Names a `where` expression may use: the case's fields (gdnbench.cases.Case: the axes, with heads as
# hk / hv and its preset's model label, and the phase) plus the derived n_seqs and total_tokens.
WHERE_NAMES: tuple[str, ...] = ("phase", "model", "hk", "hv", *(a for a in AXIS_NAMES if a != "heads"),
                                "n_seqs", "total_tokens")


def parse_where(expr: str) -> ast.Expression:
    """Parse a ``where`` filter over the case fields (``WHERE_NAMES``; the language: ``gdnbench.where``)."""
    return _parse_where(expr, WHERE_NAMES)


#: Most (case, backend) pairs a config may expand to unless it sets ``max_pairs`` (or the environment
#: sets GDNBENCH_MAX_PAIRS): far beyond any useful sweep, far below what exhausts memory.
DEFAULT_MAX_PAIRS = 100_000
MAX_PAIRS_ENV = "GDNBENCH_MAX_PAIRS"


def axis_combinations(axes: Axes, zip_groups: list[list[str]]) -> int:
    """Combinations of the axes' values (zip groups advance together): the cases before invalid
    combinations and ``where`` filters drop any, counted without building one."""
    grouped = {axis for group in zip_groups for axis in group}
    n = math.prod(len(getattr(axes, name)) for name in type(axes).model_fields if name not in grouped)
    for group in zip_groups:
        n *= len(getattr(axes, group[0]))
    return n


def max_pairs_limit(configured: int) -> int:
    """The bound in force: GDNBENCH_MAX_PAIRS when set (a positive integer), else the config's."""
    raw = os.environ.get(MAX_PAIRS_ENV, "").strip()
    if not raw:
        return configured
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"environment variable {MAX_PAIRS_ENV}={raw!r} is not a positive integer")
    return value


class Sweep(StrictModel):
    """A validated sweep config (see configs/*.yaml for annotated examples)."""

    name: str = ""
    description: str = ""
    phase: Phase
    backends: list[str] = Field(min_length=1)
    baseline: str = "torch"
    axes: Axes = Axes()
    zip: list[list[str]] = Field(default=[], description="groups of axes that advance together")
    where: list[str] = Field(default=[], description="filters: a case is kept when every expression is true")
    timing: Timing = Timing()
    per_sm: dict[str, Override] = {}
    max_pairs: int = Field(DEFAULT_MAX_PAIRS, ge=1, description="refuse a config expanding to more (case, backend) "
                           f"pairs than this (before filters); {MAX_PAIRS_ENV} overrides it")

    @field_validator("backends")
    @classmethod
    def _backends_known(cls, value: list[str]) -> list[str]:
        return _check_backends(value)

    @field_validator("baseline")
    @classmethod
    def _baseline_known(cls, value: str) -> str:
        if value not in BACKEND_NAMES:
            raise ValueError(f"unknown backend '{value}' (allowed: {', '.join(BACKEND_NAMES)})")
        return value

    @field_validator("where")
    @classmethod
    def _where_parses(cls, value: list[str]) -> list[str]:
        for i, expr in enumerate(value):
            try:
                parse_where(expr)
            except ValueError as e:
                raise ValueError(f"[{i}]: {e}") from None
        return value

    @field_validator("per_sm")
    @classmethod
    def _sm_keys(cls, value: dict[str, Override]) -> dict[str, Override]:
        for key in value:
            if not re.fullmatch(r"sm\d{2,3}", key):
                raise ValueError(f"key '{key}' is not an SM generation (expected sm90, sm100, sm103, sm120, ...)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Sweep:
        if self.baseline not in self.backends:
            raise ValueError(f"baseline '{self.baseline}' is not among backends ({', '.join(self.backends)})")
        seen: set[str] = set()
        for group in self.zip:
            if len(group) < 2:
                raise ValueError(f"zip group {group} needs at least two axes")
            for axis in group:
                if axis not in AXIS_NAMES:
                    raise ValueError(f"zip: unknown axis '{axis}' (allowed: {', '.join(AXIS_NAMES)})")
                if axis in seen:
                    raise ValueError(f"zip: axis '{axis}' appears in two groups")
                seen.add(axis)
            lengths = {axis: len(getattr(self.axes, axis)) for axis in group}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"zip: axes of one group need equal lengths, got {lengths}")
        explicit = self.axes.model_fields_set
        if self.phase == "prefill":
            if self.axes.seq_lens == [[]]:
                raise ValueError("phase prefill needs axes.seq_lens (lists of per-sequence lengths)")
            for bad in ("batch", "tokens"):
                if bad in explicit:
                    raise ValueError(f"axes.{bad} does not apply to prefill (batch and tokens come from seq_lens)")
        else:
            if "seq_lens" in explicit:
                raise ValueError(f"axes.seq_lens only applies to prefill, not {self.phase}")
        if self.phase == "decode" and any(t != 1 for t in self.axes.tokens):
            raise ValueError("decode has tokens = 1; use phase mtp for T > 1")
        if self.phase == "mtp" and any(t < 2 for t in self.axes.tokens):
            raise ValueError("mtp (verify) needs tokens >= 2")
        if self.phase != "mtp":
            for flag in ("intermediate", "tree"):
                if flag in explicit:
                    raise ValueError(f"axes.{flag} only applies to mtp")
        self.check_size()
        return self

    def pair_count(self) -> int:
        """(case, backend) pairs before invalid combinations and filters: axes product x backends."""
        return axis_combinations(self.axes, self.zip) * len(self.backends)

    def check_size(self) -> None:
        """Refuse a sweep over the pair limit (see DEFAULT_MAX_PAIRS), from the axes' lengths alone."""
        limit = max_pairs_limit(self.max_pairs)
        n = self.pair_count()
        if n > limit:
            raise ValueError(f"expands to {n:,} (case, backend) pairs ({n // len(self.backends):,} axis combinations "
                             f"x {len(self.backends)} backends), over the limit of {limit:,}: shrink the axes, or "
                             f"raise the limit with max_pairs: or {MAX_PAIRS_ENV}")

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    def with_where(self, where: list[str] | None) -> Sweep:
        """This sweep with ``where`` filters added to its own (the command line's ``--where``): in its raw
        mapping too, so the ``per_sm`` merge of ``for_sm`` keeps them (a copy of the model alone would
        carry the raw mapping without them, and a GPU with an override would run the unfiltered config)."""
        if not where:
            return self
        sweep = self.model_copy(update={"where": [*self.where, *where]})
        sweep._raw = {**copy.deepcopy(self._raw), "where": [*self._raw.get("where", []), *where]}
        return sweep

    def for_sm(self, sm: int | None) -> Sweep:
        """This sweep with the ``per_sm`` override for SM generation ``sm`` (e.g. 90) applied."""
        key = f"sm{sm}"
        if sm is None or key not in self.per_sm:
            return self
        return _merge_override(self._raw, key, source="")


def _merge_override(raw: dict[str, Any], key: str, source: str) -> Sweep:
    data = copy.deepcopy(raw)
    override = data.pop("per_sm", {})[key] or {}
    for field in ("backends", "where", "timing"):
        if field in override:
            data[field] = (list(data.get("where", [])) + list(override["where"])
                           if field == "where" else override[field])
    if override.get("axes"):
        data["axes"] = {**data.get("axes", {}), **override["axes"]}
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e).replace(
            f"{source}: ", f"{source}: per_sm.{key} (merged): ", 1)) from None
    sweep._raw = data
    return sweep


class ConfigError(Exception):
    """A config problem, already phrased as one line for the user."""


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at ``loc`` (for listing allowed keys)."""
    model: Any = Sweep
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if model is Sweep and part == "per_sm":
            model = "per_sm"
            continue
        if model == "per_sm":
            model = Override
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            args = getattr(ann, "__args__", ())
            model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model if isinstance(model, type) else None


def format_validation_error(path: str, err: ValidationError) -> str:
    """First pydantic error -> ``file: key.path: message`` (one line)."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # Drop pydantic's union-branch tags (e.g. 'list[int]') from the location.
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "int", "bool"})))
    kind = first["type"]
    msg = first["msg"]
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        allowed = ", ".join(owner.model_fields) if owner else "see the README"
        msg = f"unknown key '{loc[-1]}' (allowed: {allowed})"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind in ("too_short",) and first.get("ctx", {}).get("min_length") == 1:
        msg = "must not be empty"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    else:
        got = first.get("input")
        if not isinstance(got, (dict, list)) or len(repr(got)) < 60:
            msg = f"{msg} (got {got!r})"
    where = _loc(loc)
    m = re.match(r"^((?:\[\d+\])+): (.*)$", msg)
    if m:  # an index reported by our own validators belongs to the key path
        where, msg = where + m.group(1), m.group(2)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {where + ': ' if where else ''}{msg}{more}"


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep YAML. Raises ConfigError with a one-line message on any problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{pos}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (phase, backends, axes, ...), "
                          f"got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return parse_sweep(data, source=str(path))


def parse_sweep(data: dict[str, Any], source: str = "<config>") -> Sweep:
    """Validate an already-parsed mapping (see load_sweep)."""
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None
    sweep._raw = copy.deepcopy(data)
    for key in sweep.per_sm:  # surface override errors at load time, not on the GPU
        _merge_override(sweep._raw, key, source)
    return sweep


def where_variants(sweep: Sweep, source: str) -> list[tuple[str, Sweep]]:
    """The sweep and each of its ``per_sm`` merges, with the prefix an error about it starts with
    (``gdnbench.cases.check_where`` evaluates their filters on their cases)."""
    return [(f"{source}: ", sweep)] + [(f"{source}: per_sm.{key} (merged): ", _merge_override(sweep._raw, key, source))
                                       for key in sweep.per_sm]
