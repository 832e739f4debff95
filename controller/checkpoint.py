"""Learner checkpoints: one file per policy, written atomically, refused when it does not fit.

Format (``FORMAT_VERSION`` 1): a single numpy ``.npz`` archive (a zip of ``.npy`` arrays, read with
``allow_pickle=False``, so loading a checkpoint never runs code). It holds

* every array of the policy's ``state_dict()`` under its own key (torch tensors are stored as numpy
  arrays of the same dtype and converted back by the policy's ``load_state_dict``), and
* ``__header__``: UTF-8 JSON as a uint8 array, with ``format``, ``format_version``,
  ``mfrm_version``, ``policy``, ``signature`` (the shapes the state must fit: feature dimension,
  actions, network sizes, state version), ``settings`` (the policy's hyperparameters), ``seed``,
  ``tick``, ``time_s``, ``arrays`` (name → shape and dtype) and ``values`` (the non-array entries of
  the state: step counters, the KL coefficient, generator states).

Compatibility is decided by ``format_version``, the policy's ``signature`` (which carries its own
state version) and the names and shapes of the stored arrays; ``mfrm_version`` is recorded for
provenance only. Entries under ``pending/`` (the decision whose reward was still due, one row per
function) depend on the workload, not on the policy, and are not compared. Settings that differ (say,
a new learning rate) are reported, not refused: fine-tuning with other hyperparameters is legitimate.

Atomicity: the archive is written to a temporary file in the target's directory, flushed and
fsync'ed, then renamed over the target with ``os.replace`` (atomic on POSIX and Windows), and the
directory is fsync'ed so the rename itself survives a power cut. A process killed at any point
leaves either the previous checkpoint or the new one, never a torn file; a leftover temporary
file is removed by the next save.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from controller.version import __version__

log = logging.getLogger(__name__)

FORMAT = "mfrm-checkpoint"
#: Layout of the file itself (header keys, how arrays are stored). Bump on any incompatible change.
FORMAT_VERSION = 1
_HEADER_KEY = "__header__"
#: State keys whose presence and shape follow the workload (see the module docstring).
_UNCHECKED_PREFIX = "pending/"
_TMP_MARK = ".tmp-"


class CheckpointError(Exception):
    """A checkpoint could not be written, read, or loaded into the given policy."""


class Checkpointable(Protocol):
    """What a policy offers to be checkpointed (``policies.types.Learner``)."""

    name: str

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def checkpoint_signature(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What :func:`load_checkpoint` restored."""

    path: Path
    """The file read."""
    header: Mapping[str, Any]
    """Its JSON header (see the module docstring)."""
    settings_differences: tuple[str, ...] = field(default_factory=tuple)
    """Hyperparameters that differ between the checkpoint and the policy it was loaded into."""


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "detach")


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _split_state(state: Mapping[str, Any], policy_name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    values: dict[str, Any] = {}
    for key, value in state.items():
        if key == _HEADER_KEY:
            raise CheckpointError(f"policy {policy_name!r}: state key {key!r} is reserved")
        if _is_array(value):
            array = _as_numpy(value)
            if array.dtype == object:
                raise CheckpointError(
                    f"policy {policy_name!r}: state array {key!r} has dtype object, which is not storable"
                )
            arrays[key] = array
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError) as error:
                raise CheckpointError(
                    f"policy {policy_name!r}: state value {key!r} ({type(value).__name__}) is neither an array nor JSON: {error}"
                ) from None
            values[key] = value
    return arrays, values


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable; not possible on every platform (e.g. Windows), where it is skipped.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}{_TMP_MARK}*"):
        stale.unlink(missing_ok=True)


def save_checkpoint(
    path: str | os.PathLike[str],
    policy: Checkpointable,
    *,
    tick: int,
    time_s: float,
    seed: int | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``policy``'s state to ``path`` atomically; returns the path.

    ``seed`` and ``settings`` default to the policy's own ``seed`` and ``settings_record``
    attributes when it has them.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays, values = _split_state(policy.state_dict(), policy.name)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mfrm_version": __version__,
        "policy": policy.name,
        "signature": dict(policy.checkpoint_signature()),
        "settings": dict(settings if settings is not None else getattr(policy, "settings_record", {})),
        "seed": seed if seed is not None else getattr(policy, "seed", None),
        "tick": int(tick),
        "time_s": float(time_s),
        "arrays": {key: {"shape": list(a.shape), "dtype": a.dtype.str} for key, a in arrays.items()},
        "values": values,
    }
    encoded = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    _remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{_HEADER_KEY: encoded}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the state (numpy arrays and plain values) of a checkpoint file.

    Refuses, with one :class:`CheckpointError` line naming the file and what is wrong: a path that
    is missing or a directory; a file that is not a numpy ``.npz`` archive (pickled data is never
    read); a header that is not the JSON object the format describes; arrays that disagree with
    the header; a learner array holding NaN or an infinity (naming the array and the first bad
    index); a value that is NaN or infinite; a tick that is not a count (an integer >= 0).
    """
    source = Path(path)
    if source.is_dir():
        raise CheckpointError(f"checkpoint {source} is a directory, not a checkpoint file")
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    if not zipfile.is_zipfile(source):
        raise CheckpointError(f"{source} is not a readable mfrm checkpoint: not a numpy .npz archive")
    try:
        with np.load(source, allow_pickle=False) as archive:
            if _HEADER_KEY not in archive.files:
                raise CheckpointError(f"{source} is not an mfrm checkpoint: it has no {_HEADER_KEY} entry")
            raw = archive[_HEADER_KEY]
            arrays = {key: archive[key] for key in archive.files if key != _HEADER_KEY}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        # numpy's own words for an object entry suggest allow_pickle, which would run code: not ours.
        detail = "an entry holds pickled objects, which are never loaded" if "pickle" in str(error) else str(error)
        raise CheckpointError(f"{source} is not a readable mfrm checkpoint: {detail}") from None
    header = _decode_header(source, raw)
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not an mfrm checkpoint (format={header.get('format')!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has checkpoint format version {header.get('format_version')!r} (written by mfrm "
            f"{header.get('mfrm_version')}); this mfrm ({__version__}) reads format version {FORMAT_VERSION}"
        )
    _check_header(source, header, arrays)
    state: dict[str, Any] = dict(header["values"])
    state.update(arrays)
    return header, state


def _decode_header(source: Path, raw: np.ndarray) -> dict[str, Any]:
    """The header entry as a JSON object; one line naming the file otherwise."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{source}: malformed header: {_HEADER_KEY} is a {raw.dtype} array of shape "
                              f"{raw.shape}, not UTF-8 bytes")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{source}: malformed header: not UTF-8 JSON ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source}: malformed header: a JSON {type(header).__name__}, not an object")
    return header


#: Header keys whose value must be a JSON object (the module docstring lists them).
_HEADER_OBJECTS = ("signature", "settings", "arrays", "values")


def _check_header(source: Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse a header or state that no save could have written (see :func:`read_checkpoint`)."""
    for key in _HEADER_OBJECTS:
        if not isinstance(header.get(key), dict):
            raise CheckpointError(f"{source}: malformed header: {key} is {_kind(header.get(key))}, not an object")
    tick = header.get("tick")
    if isinstance(tick, bool) or not isinstance(tick, int) or tick < 0:
        raise CheckpointError(f"{source}: tick={tick!r} is not a count of ticks (an integer >= 0)")
    time_s = header.get("time_s")
    if isinstance(time_s, bool) or not isinstance(time_s, (int, float)) or not math.isfinite(time_s):
        raise CheckpointError(f"{source}: time_s={time_s!r} is not a finite number of seconds")
    for key, spec in header["arrays"].items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if key not in arrays:
            raise CheckpointError(f"{source}: malformed checkpoint: the header lists array {key}, the file lacks it")
        if not isinstance(shape, list) or tuple(shape) != arrays[key].shape:
            raise CheckpointError(f"{source}: malformed checkpoint: array {key} has shape {arrays[key].shape}, "
                                  f"the header says {shape!r}")
    for key in sorted(set(arrays) - set(header["arrays"])):
        raise CheckpointError(f"{source}: malformed checkpoint: array {key} is not listed in the header")
    for key, array in arrays.items():
        _check_finite_array(source, key, array)
    for key, value in header["values"].items():
        found = _first_non_finite_value(value, key)
        if found is not None:
            raise CheckpointError(f"{source}: value {found[0]}={found[1]} is not a finite number")


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def _check_finite_array(source: Path, key: str, array: np.ndarray) -> None:
    """Learner arrays must be finite; a ``pending/`` array (one tick's observations) may hold NaN,
    an unknown value, but never an infinity."""
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array) if not key.startswith(_UNCHECKED_PREFIX) else np.isinf(array)
    if bad.any():
        first = np.unravel_index(int(np.flatnonzero(bad)[0]), array.shape) if array.ndim else ()
        index = "[" + ", ".join(str(int(i)) for i in first) + "]"
        value = array[first] if array.ndim else array[()]
        raise CheckpointError(f"{source}: array {key} holds {value} at index {index}: a checkpoint of a learner "
                              "that diverged is not loaded")


def _first_non_finite_value(value: Any, where: str) -> tuple[str, float] | None:
    """The first float in a JSON value that is NaN or infinite, with where it sits (e.g.
    ``rng.state.inc``); None if there is none."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, value)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _first_non_finite_value(item, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")
        if found is not None:
            return found
    return None


def _counter_problems(label: str, saved: Any, current: Any) -> list[str]:
    """Where the policy keeps an integer (a counter, a generator's state), the checkpoint must hold
    an integer >= 0 there too; walks dicts and lists alongside the policy's own state."""
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(saved, bool) or not isinstance(saved, int) or saved < 0:
            return [f"value {label}={saved!r} is not a count (an integer >= 0)"]
        return []
    if isinstance(current, dict) and isinstance(saved, dict):
        return [p for key in current if key in saved for p in _counter_problems(f"{label}.{key}", saved[key], current[key])]
    if isinstance(current, list) and isinstance(saved, list) and len(current) == len(saved):
        return [p for i, (a, b) in enumerate(zip(saved, current)) for p in _counter_problems(f"{label}[{i}]", a, b)]
    return []


def _differences(label: str, saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(_differences(f"{label}{key}.", a, b))
        elif a != b:
            out.append(f"{label}{key}: checkpoint {a!r}, this policy {b!r}")
    return out


def load_checkpoint(path: str | os.PathLike[str], policy: Checkpointable) -> LoadedCheckpoint:
    """Restore ``policy`` from ``path``; refuses (CheckpointError naming what differs) when it does not fit.

    Nothing in ``policy`` changes when the checkpoint is refused.
    """
    source = Path(path)
    header, state = read_checkpoint(source)
    problems = _differences("", header.get("signature", {}), dict(policy.checkpoint_signature()))
    current_arrays, current_values = _split_state(policy.state_dict(), policy.name)
    saved_values = header.get("values", {})

    def checked(keys: Any) -> set[str]:
        return {key for key in keys if not key.startswith(_UNCHECKED_PREFIX)}

    for key in sorted(checked(current_values) & checked(saved_values)):
        problems.extend(_counter_problems(key, saved_values[key], current_values[key]))
    for key in sorted(checked(current_values) ^ checked(saved_values)):
        where = (
            "absent from the checkpoint"
            if key not in saved_values
            else "in the checkpoint, unknown to this policy"
        )
        problems.append(f"value {key}: {where}")
    for key in sorted(checked(current_arrays) | checked(header.get("arrays", {}))):
        saved = header.get("arrays", {}).get(key)
        if saved is None:
            problems.append(f"array {key}: absent from the checkpoint")
        elif key not in current_arrays:
            problems.append(f"array {key}: in the checkpoint, unknown to this policy")
        elif tuple(saved["shape"]) != current_arrays[key].shape:
            problems.append(
                f"array {key}: checkpoint shape {tuple(saved['shape'])}, this policy {current_arrays[key].shape}"
            )
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not fit policy {policy.name!r}:\n  " + "\n  ".join(problems)
        )
    policy.load_state_dict(state)
    settings_diff = _differences("", header.get("settings", {}), dict(getattr(policy, "settings_record", {})))
    for line in settings_diff:
        # How the policy is used (judged frozen or greedy after learning) is expected to differ from
        # how it was trained; anything else is worth a warning.
        usage = line.startswith(_USAGE_SETTINGS)
        log.log(logging.INFO if usage else logging.WARNING, "checkpoint %s: setting differs: %s", source, line)
    return LoadedCheckpoint(path=source, header=header, settings_differences=tuple(settings_diff))


#: Settings that say how a learner is used rather than what it learned (see ``load_checkpoint``).
_USAGE_SETTINGS: tuple[str, ...] = ("agent.frozen:", "agent.greedy:")


@dataclass
class Checkpointer:
    """Saves one policy to one file, atomically, and loads it back: the only checkpoint writer of
    every command (the control loop calls :meth:`save` every ``checkpoint_every_ticks`` ticks; the
    command that owns the run calls it once more when the run ends, however it ends).

    Ticks are counted across runs: ``tick_offset`` ticks trained before this run (earlier training
    episodes, or the checkpoint a run resumed from) are added to the loop's own count.
    """

    path: Path
    """The checkpoint file (created with its folder on the first save)."""
    tick_offset: int = 0
    """Ticks the policy had been trained for before the current run, added to the loop's tick."""
    on_save: Callable[[Path, int], None] | None = None
    """Called with the file and the tick after every save (e.g. a metrics counter)."""
    saved: int = 0
    """Checkpoints written."""
    last_tick: int | None = None
    """The tick of the last checkpoint written or loaded (None: none yet)."""

    @classmethod
    def in_directory(cls, directory: Path, policy_name: str, **kwargs: Any) -> Checkpointer:
        """The checkpointer of policy ``policy_name`` in ``directory`` (file ``<name>.ckpt.npz``)."""
        return cls(path=Path(directory) / f"{policy_name}.ckpt.npz", **kwargs)

    def save(self, policy: Checkpointable, tick: int, now: float) -> Path:
        """Write ``policy`` at the loop's ``tick`` (``now``, s); returns the file."""
        total = self.tick_offset + int(tick)
        path = save_checkpoint(self.path, policy, tick=total, time_s=now)
        self.saved += 1
        self.last_tick = total
        log.info("checkpoint of %s saved at tick %d: %s", policy.name, total, path)
        if self.on_save is not None:
            self.on_save(path, total)
        return path

    def load(self, policy: Checkpointable) -> LoadedCheckpoint:
        """Restore ``policy`` from the file; the loaded tick becomes :attr:`last_tick`."""
        loaded = load_checkpoint(self.path, policy)
        self.last_tick = int(loaded.header.get("tick", 0))
        return loaded


__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "Checkpointable",
    "Checkpointer",
    "LoadedCheckpoint",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
