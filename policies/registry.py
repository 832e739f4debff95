"""Policies chosen by name: every baseline and learner registers a factory here.

A factory takes keyword parameters (its own hyperparameters, all with defaults) and returns a fresh
object satisfying :class:`policies.types.Policy`. Unknown names fail with the list of known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policies.types import Policy

PolicyFactory = Callable[..., Policy]

_REGISTRY: dict[str, PolicyFactory] = {}


def register(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Class or function decorator: make ``name`` resolve to the decorated factory."""

    def decorate(factory: PolicyFactory) -> PolicyFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"policy name {name!r} is already registered to {_REGISTRY[name]!r}")
        _REGISTRY[name] = factory
        return factory

    return decorate


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators. Kept lazy so that importing
    # policies.types alone stays cheap (no torch).
    import importlib

    for module in ("policies.baselines", "policies.serverless_nac", "policies.nac_nn"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            # Only a missing module of our own is tolerated (it lands with a later issue);
            # a missing third-party dependency inside it is a real error.
            if error.name != module:
                raise


def available() -> list[str]:
    """Names of every registered policy, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def make(name: str, **params: Any) -> Policy:
    """A new policy by registered name, with ``params`` overriding its defaults."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise KeyError(f"unknown policy {name!r}; known policies: {known}") from None
    return factory(**params)
