"""Policies chosen by name: every baseline and learner registers a factory here.

A factory takes keyword parameters (its own hyperparameters, all with defaults) and returns a fresh
object satisfying :class:`policies.types.Policy`; a factory registered with ``learns=True`` returns a
:class:`policies.types.Learner` (checked by :func:`make`). Unknown names fail with the list of known
ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policies.types import Policy, is_learner

PolicyFactory = Callable[..., Policy]

#: The modules whose import registers the built-in policies (their ``@register`` decorators run).
BUILTIN_MODULES: tuple[str, ...] = ("policies.baselines", "policies.nac_linear", "policies.nac_nn")


@dataclass(frozen=True)
class _Entry:
    """One registered name."""

    factory: PolicyFactory
    """Builds a fresh policy from keyword parameters."""
    learns: bool
    """Whether the factory's policies learn (are :class:`~policies.types.Learner`)."""


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, *, learns: bool = False) -> Callable[[PolicyFactory], PolicyFactory]:
    """Class or function decorator: make ``name`` resolve to the decorated factory.

    ``learns`` declares that the factory builds a :class:`~policies.types.Learner` (a policy that
    updates from ``feedback`` and can be checkpointed); a baseline leaves it False.
    """

    def decorate(factory: PolicyFactory) -> PolicyFactory:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"policy name {name!r} is already registered to {_REGISTRY[name].factory!r}")
        _REGISTRY[name] = _Entry(factory, learns)
        return factory

    return decorate


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators. Kept lazy so that importing
    # policies.types alone stays cheap (no torch).
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def _entry(name: str) -> _Entry:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise KeyError(f"unknown policy {name!r}; known policies: {known}") from None


def available() -> list[str]:
    """Names of every registered policy, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def learned_policies() -> tuple[str, ...]:
    """Names of the registered policies that learn, sorted."""
    _load_builtin()
    return tuple(sorted(name for name, entry in _REGISTRY.items() if entry.learns))


def learns(name: str) -> bool:
    """Whether the policy registered as ``name`` learns; an unknown name fails as :func:`make` does."""
    return _entry(name).learns


def make(name: str, **params: Any) -> Policy:
    """A new policy by registered name, with ``params`` overriding its defaults.

    Raises ``KeyError`` for an unknown name (listing the known ones), and ``TypeError`` if the
    factory's product disagrees with how it was registered (a learner not registered with
    ``learns=True``, or the reverse): callers decide what to checkpoint and export from
    :func:`learns`, so the two must never differ.
    """
    entry = _entry(name)
    policy = entry.factory(**params)
    if is_learner(policy) != entry.learns:
        verdict = "does not satisfy" if entry.learns else "satisfies"
        raise TypeError(
            f"policy {name!r} is registered with learns={entry.learns}, but its factory returned a "
            f"{type(policy).__name__}, which {verdict} policies.types.Learner"
        )
    return policy
