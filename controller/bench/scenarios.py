"""Scenarios of the evaluation suite, declared in YAML files shipped in ``scenarios/``.

A scenario file is a settings file (every key as in docs/user-guide.md: the cluster, the workload,
the load) plus a ``scenario`` section that says what the suite does with it::

    scenario:
      version: 1                                   # format of this section
      name: paper-12                               # the scenario's name in every result
      description: The paper's cluster with 12 functions.
      train: {start_minute: 480, minutes: 240}     # the trace window learners train on
      evaluate: {start_minute: 720, minutes: 240}  # the window every policy is judged on
      quick: {train_minutes: 60, evaluate_minutes: 60}   # the windows' lengths under --quick
      split: {seed: 2026}                          # optional: learners train on one half of the
                                                   # sampled functions, every policy is judged on
                                                   # the other (workload.split_seed / split_part);
                                                   # with within: {seed: 2026, part: train} it splits
                                                   # that half of another split instead (a tuning copy)
    cluster: {invokers: 21, cores: 8}
    workload: {functions: 12}

Learners are always judged on functions or a window they did not train on: the evaluation window
must not overlap the training window unless the functions are split. A malformed file is refused
with its file, line and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from controller.settings import Settings, SettingsError, load_settings

#: The format of the ``scenario`` section this code reads.
SCENARIO_VERSION = 1

#: The scenarios shipped with the project.
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be used: the message names the file, the line and the key."""


@dataclass(frozen=True)
class Window:
    """A window of trace minutes."""

    start_minute: int
    """First trace minute."""
    minutes: int
    """Length, whole minutes."""

    @property
    def end_minute(self) -> int:
        """One past the last minute."""
        return self.start_minute + self.minutes


@dataclass(frozen=True)
class Scenario:
    """One scenario: its file, its windows and the settings every cell of it starts from."""

    name: str
    """Name in every result row and file name."""
    description: str
    """One line for tables and plots."""
    path: Path
    """The file it was read from."""
    train: Window
    """The window learners train on."""
    evaluate: Window
    """The window every policy is judged on."""
    quick_train_minutes: int
    """``train.minutes`` under ``--quick``."""
    quick_evaluate_minutes: int
    """``evaluate.minutes`` under ``--quick``."""
    split_seed: int | None
    """Seed of the function split (learners train on one half, everyone is judged on the other)."""
    split_within: tuple[int, str] | None = None
    """(seed, part) of an outer split whose half ``split_seed`` splits again (a tuning copy of a split
    scenario: it splits the scenario's training half). None: ``split_seed`` splits every function."""
    trace_dir: Path | None = None
    """The file's ``workload.trace_dir``, a relative one read from the file's folder (None: unset)."""

    def window(self, part: str, quick: bool) -> Window:
        """The ``train`` or ``evaluate`` window, shortened under ``quick``."""
        window = self.train if part == "train" else self.evaluate
        if quick:
            minutes = self.quick_train_minutes if part == "train" else self.quick_evaluate_minutes
            window = replace(window, minutes=min(window.minutes, minutes))
        return window

    def overrides(self, part: str, quick: bool) -> dict[str, Any]:
        """The settings overrides of a ``train`` or ``evaluate`` run of this scenario."""
        window = self.window(part, quick)
        out: dict[str, Any] = {"workload.start_minute": window.start_minute, "workload.minutes": window.minutes}
        if self.trace_dir is not None:
            out["workload.trace_dir"] = str(self.trace_dir)
        if self.split_seed is not None:
            out["workload.split_seed"] = self.split_seed
            out["workload.split_part"] = part
        if self.split_within is not None:
            out["workload.split_within_seed"], out["workload.split_within_part"] = self.split_within
        return out

    def settings(self, part: str, quick: bool, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The settings of a run of this scenario: the file, the window of ``part``, then ``overrides``."""
        merged = {**self.overrides(part, quick), **(overrides or {})}
        try:
            return load_settings(self.path, merged, other_sections=("scenario",))
        except SettingsError as error:
            raise ScenarioError(f"{self.path}: {error}") from None


def _line_of(node: yaml.Node | None, path: tuple[str, ...]) -> int | None:
    line = None
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            return line
        for key, value in node.value:
            if key.value == part:
                line, node = key.start_mark.line + 1, value
                break
        else:
            return line
    return line


class _Reader:
    """Reads the ``scenario`` section, naming file, line and key in every complaint."""

    def __init__(self, path: Path, data: Mapping[str, Any], node: yaml.Node | None) -> None:
        self.path, self.data, self.node = path, data, node

    def fail(self, key: tuple[str, ...], message: str) -> ScenarioError:
        line = _line_of(self.node, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ScenarioError(f"{where}: {'.'.join(key)}: {message}")

    def mapping(self, key: tuple[str, ...], value: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping with {', '.join(allowed)}, got {value!r}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise self.fail((*key, str(unknown[0])), f"unknown key (allowed: {', '.join(allowed)})")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(key, f"missing {', '.join(missing)}")
        return value

    def integer(self, key: tuple[str, ...], value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be a whole number in [{low}, {high}], got {value!r}")
        return value

    def text(self, key: tuple[str, ...], value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty text, got {value!r}")
        return value.strip()

    def choice(self, key: tuple[str, ...], value: Any, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def window(self, name: str, value: Any) -> Window:
        w = self.mapping(("scenario", name), value, ("start_minute", "minutes"), ("start_minute", "minutes"))
        return Window(self.integer(("scenario", name, "start_minute"), w["start_minute"], 0, 1_000_000),
                      self.integer(("scenario", name, "minutes"), w["minutes"], 1, 1_000_000))


def _trace_dir(path: Path, data: Mapping[str, Any]) -> Path | None:
    workload = data.get("workload")
    value = workload.get("trace_dir") if isinstance(workload, Mapping) else None
    if not isinstance(value, str):
        return None
    trace = Path(value)
    return trace if trace.is_absolute() else (path.parent / trace).resolve()


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file (its settings for both windows included); raises
    :class:`ScenarioError` naming the file, line and key at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read it: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ScenarioError(f"{path}: not UTF-8 text (offset {error.start})") from None
    try:
        data, node = yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ScenarioError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    if not isinstance(data, Mapping) or "scenario" not in data:
        raise ScenarioError(f"{path}: a scenario file needs a top-level 'scenario' section")
    r = _Reader(path, data, node)
    s = r.mapping(("scenario",), data["scenario"], ("version", "name", "description", "train", "evaluate", "quick", "split"),
                  ("version", "name", "train", "evaluate"))
    version = r.integer(("scenario", "version"), s["version"], 1, 1_000)
    if version != SCENARIO_VERSION:
        raise r.fail(("scenario", "version"), f"this mfrm reads version {SCENARIO_VERSION}, the file is version {version}")
    name = r.text(("scenario", "name"), s["name"])
    if not all(c.isalnum() or c in "-_" for c in name):
        raise r.fail(("scenario", "name"), f"letters, digits, '-' and '_' only (it names files), got {name!r}")
    train, evaluate = r.window("train", s["train"]), r.window("evaluate", s["evaluate"])
    quick = r.mapping(("scenario", "quick"), s.get("quick", {}), ("train_minutes", "evaluate_minutes"), ())
    split_seed = None
    split_within: tuple[int, str] | None = None
    if "split" in s:
        split = r.mapping(("scenario", "split"), s["split"], ("seed", "within"), ("seed",))
        split_seed = r.integer(("scenario", "split", "seed"), split["seed"], 0, 2**63 - 1)
        if "within" in split:
            within = r.mapping(("scenario", "split", "within"), split["within"], ("seed", "part"), ("seed", "part"))
            split_within = (r.integer(("scenario", "split", "within", "seed"), within["seed"], 0, 2**63 - 1),
                            r.choice(("scenario", "split", "within", "part"), within["part"], ("train", "evaluate")))
    overlap = train.start_minute < evaluate.end_minute and evaluate.start_minute < train.end_minute
    if overlap and split_seed is None:
        raise r.fail(("scenario", "evaluate"), f"minutes [{evaluate.start_minute}, {evaluate.end_minute}) overlap the "
                     f"training window [{train.start_minute}, {train.end_minute}): learners must be judged on data "
                     "they did not train on (move the window, or split the functions)")
    scenario = Scenario(
        name=name, description=r.text(("scenario", "description"), s.get("description", name)), path=path,
        train=train, evaluate=evaluate,
        quick_train_minutes=r.integer(("scenario", "quick", "train_minutes"), quick.get("train_minutes", train.minutes),
                                      1, 1_000_000),
        quick_evaluate_minutes=r.integer(("scenario", "quick", "evaluate_minutes"),
                                         quick.get("evaluate_minutes", evaluate.minutes), 1, 1_000_000),
        split_seed=split_seed,
        split_within=split_within,
        trace_dir=_trace_dir(path, data),
    )
    for part in ("train", "evaluate"):  # every setting is checked before any work starts
        scenario.settings(part, quick=False)
    return scenario


def shipped_scenarios() -> list[Path]:
    """The scenario files shipped with the project, by name."""
    return sorted(SCENARIO_DIR.glob("*.yaml"))


__all__ = ["SCENARIO_DIR", "SCENARIO_VERSION", "Scenario", "ScenarioError", "Window", "load_scenario",
           "shipped_scenarios"]
