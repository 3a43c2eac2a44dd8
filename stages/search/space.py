"""A search space: conf/search/<name>.yaml, a Hydra group beside the recipes (conf/train/). It names train's
params.yaml keys and the values each may take, the sampler that picks them and the pruner that stops a trial early:

    sampler: {name: tpe, seed: 0}           # tpe | random | grid (every combination of the choices, each once)
    pruner: {name: median, n_warmup_steps: 1}   # median | percentile | threshold | hyperband | none, Optuna's options
    params:
      train.lam: {low: 0.05, high: 1.0, log: true}   # a range (ints for an integer setting; step, log optional)
      train.num_heads: {choices: [1, 2, 4]}           # or a list of values

The whole space is checked before any trial: an unknown key, an empty range, and every value the settings refuse
(each choice, both ends of a range, checked as `csra train` would) are one error naming the file and key."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from csra.errors import CSRAError, first_line
from csra.settings import UNSEARCHED, closest, with_role
from stages.params import load_params
from stages.train import Params as TrainStageParams
from stages.train import TrainParams

# train's settings but those that say where a run goes or how fast, not what it learns (their role UNSEARCHED)
SEARCHABLE = [f"train.{name}" for name in typing.get_type_hints(TrainParams)
              if name not in with_role(TrainParams, UNSEARCHED)]
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner", "threshold": "ThresholdPruner",
           "hyperband": "HyperbandPruner", "none": "NopPruner"}
SPEC_KEYS = ("choices", "low", "high", "log", "step")


@dataclass(frozen=True)
class Dimension:
    """One searched key: its choices, or a range low..high (int or float, as the setting; log scale; step)."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        kind = "integer" if self.integer else "number"
        extra = (" on a log scale" if self.log else "") + (f" by {self.step:g}" if self.step else "")
        return f"{kind} {self.low:g}..{self.high:g}{extra}"


@dataclass(frozen=True)
class Space:
    """A checked space: its name, file, dimensions, sampler and pruner settings."""

    name: str
    source: str
    dimensions: tuple[Dimension, ...]
    sampler: dict
    pruner: dict

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """{params.yaml key: value} for this trial."""
        return {d.key: d.suggest(trial) for d in self.dimensions}

    def grid(self) -> dict[str, list] | None:
        """The grid sampler's points, None for another sampler."""
        return {d.key: list(d.choices) for d in self.dimensions} if self.sampler["name"] == "grid" else None

    def grid_size(self) -> int | None:
        grid = self.grid()
        return None if grid is None else int(math.prod(len(v) for v in grid.values()))

    def make_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        """Optuna's sampler; seed: this worker's (workers seeded alike would pick the same points)."""
        options = {k: v for k, v in self.sampler.items() if k not in ("name", "seed")}
        kinds = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        if self.sampler["name"] == "grid":
            return optuna.samplers.GridSampler(self.grid(), seed=seed, **options)
        return kinds[self.sampler["name"]](seed=seed, **options)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        options = {k: v for k, v in self.pruner.items() if k != "name"}
        return getattr(optuna.pruners, PRUNERS[self.pruner["name"]])(**options)

    def record(self) -> dict[str, Any]:
        """What a study keeps of its space (a later invocation must bring the same)."""
        return {"name": self.name, "sampler": self.sampler, "pruner": self.pruner,
                "params": {d.key: d.describe() for d in self.dimensions}}


def _shown(path: Path) -> Path:
    """path as the user named it: relative to the working folder when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def space_names(conf: Path) -> list[str]:
    return sorted(p.stem for p in (conf / "search").glob("*.yaml"))


def compose_space(conf: Path, name: str) -> dict:
    """The group search=name composed by Hydra from conf (its defaults list and interpolations resolved)."""
    source = _shown(conf / "search" / f"{name}.yaml")
    if not source.is_file():
        names = space_names(conf)
        raise CSRAError(f"--space {name}: no {source}; the spaces are: {', '.join(names) or 'none'}")
    try:
        with initialize_config_dir(config_dir=str(conf.resolve()), version_base=None):
            composed = compose(config_name="config", overrides=[f"+search={name}"])
        space = OmegaConf.to_container(composed.search, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise CSRAError(f"{source}: {first_line(e)}") from None
    if not isinstance(space, dict):
        raise CSRAError(f"{source}: expected a mapping with params (and sampler, pruner)")
    return space


def load_space(conf: Path, name: str, params_file: Path) -> Space:
    """The space conf/search/<name>.yaml, checked whole against train's settings in params_file."""
    source = str(_shown(conf / "search" / f"{name}.yaml"))
    raw = compose_space(conf, name)
    for key in raw:
        if key not in ("params", "sampler", "pruner"):
            raise CSRAError(f"{source}: unknown key {key}{closest(str(key), ['params', 'sampler', 'pruner'])}; "
                            "a space takes params, sampler and pruner")
    if not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise CSRAError(f"{source}: params must map at least one params.yaml key (train.lam, …) to its values")
    dims = tuple(_dimension(source, key, spec, params_file) for key, spec in raw["params"].items())
    sampler = _named(source, "sampler", raw.get("sampler"), "tpe", SAMPLERS)
    pruner = _named(source, "pruner", raw.get("pruner"), "median", tuple(PRUNERS))
    space = Space(name, source, dims, sampler, pruner)
    if sampler["name"] == "grid":
        ranged = [d.key for d in dims if d.choices is None]
        if ranged:
            raise CSRAError(f"{source}: sampler grid takes choices only; {', '.join(ranged)} is a range")
    for what, make in (("sampler", lambda: space.make_sampler(0)), ("pruner", space.make_pruner)):
        try:
            make()
        except (TypeError, ValueError) as e:
            raise CSRAError(f"{source}: {what} {raw.get(what)}: {e}") from None
    return space


def _named(source: str, what: str, value: Any, default: str, names: tuple[str, ...]) -> dict:
    value = {"name": default} if value is None else value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or value.get("name") not in names:
        raise CSRAError(f"{source}: {what} must be one of {', '.join(names)} (or a mapping with name: and Optuna's "
                        f"options), got {value!r}")
    return dict(value)


def _dimension(source: str, key: str, spec: Any, params_file: Path) -> Dimension:
    where = f"{source}: params.{key}"
    if key not in SEARCHABLE:
        raise CSRAError(f"{where}: not a searchable key{closest(str(key), SEARCHABLE)}; a space searches train's "
                        f"recipe keys ({', '.join(SEARCHABLE)})")
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict) or not spec:
        raise CSRAError(f"{where}: expected {{choices: [...]}} or {{low: …, high: …}}, got {spec!r}")
    for name in spec:
        if name not in SPEC_KEYS:
            raise CSRAError(f"{where}: unknown key {name}{closest(str(name), list(SPEC_KEYS))}; a dimension takes "
                            f"{', '.join(SPEC_KEYS)}")
    kind = typing.get_type_hints(TrainParams)[key.split(".", 1)[1]]
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"}:
            raise CSRAError(f"{where}: choices take no {', '.join(sorted(set(spec) - {'choices'}))}")
        if not isinstance(choices, list) or not choices:
            raise CSRAError(f"{where}: choices must be a non-empty list, got {choices!r}")
        for value in choices:
            _allowed(where, key, value, params_file)
        return Dimension(key, choices=tuple(choices))
    if kind not in (int, float):
        raise CSRAError(f"{where}: {key} is not a number; give its choices")
    low, high = spec.get("low"), spec.get("high")
    numbers = (int,) if kind is int else (int, float)
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, numbers) or isinstance(value, bool):
            raise CSRAError(f"{where}: {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not low < high:
        raise CSRAError(f"{where}: the range {low}..{high} is empty (low must be below high)")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise CSRAError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise CSRAError(f"{where}: a log scale needs low > 0, got {low}")
    if step is not None and (not isinstance(step, numbers) or isinstance(step, bool) or step <= 0 or log):
        raise CSRAError(f"{where}: step must be a positive {'integer' if kind is int else 'number'} and takes no log"
                        f" scale, got {step!r}")
    for value in (low, high):
        _allowed(where, key, value, params_file)
    return Dimension(key, low=low, high=high, log=log, step=step, integer=kind is int)


def _allowed(where: str, key: str, value: Any, params_file: Path) -> None:
    """value for key is one `csra train` takes with the rest of params_file, else a CSRAError naming it."""
    try:
        load_params(TrainStageParams, params_file, {key: value})
    except CSRAError as e:
        reason = str(e).split(": ", 1)[-1]
        raise CSRAError(f"{where}: {value!r} is refused: {reason}") from None
