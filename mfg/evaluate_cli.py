"""``mfrm mfg exploitability``: the exact exploitability of a policy array saved with ``numpy.save``.

A malformed input is refused with a message that names what is wrong (exit code 2); nothing is
renormalised or clipped, so the numbers printed are those of the array as given.
"""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np

from mfg.dp import (
    Discounted,
    DistributionError,
    FiniteHorizon,
    PolicyArrayError,
    Setting,
    as_policy_array,
    evaluate,
    initial_distribution,
)
from mfg.games import GAME_NAMES, make_game
from mfg.model import MeanFieldGame

_HELP = """Exact exploitability of a policy in one of the paper's mean-field games.

\b
E(pi) = V^{BR,lam}(mu0) - V^{pi,lam}(mu0) under the mean field pi induces, in the game's own
reward units (SIS rewards are costs), by dynamic programming with the model.

\b
The policy file is a .npy array of shape (T+1, S, A) (one row per decision epoch t = 0..T) or
(S, A) (the same policy at every epoch; required with --gamma). Each row pi(.|s) lists the
probabilities of the actions in this order:
  sis: states (S, I); actions (D = social distancing, U = go out)
  lq:  states -12..12 (grid positions, 25 states); actions -3, -2, -1, 0, +1, +2, +3

\b
Example:
  mfrm mfg exploitability --game sis --horizon 50 --mu0 0.4,0.6 --lam 0 --policy pi.npy
"""


def _parse_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _parse_params(values: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        if key == "mu0":
            raise click.BadParameter("set the initial distribution with --mu0", param_hint="--param")
        try:
            params[key] = _parse_number(raw)
        except ValueError:
            raise click.BadParameter(f"{key}: {raw!r} is not a number", param_hint="--param") from None
    return params


def _parse_mu0(text: str) -> np.ndarray:
    try:
        return np.array([float(part) for part in text.split(",")])
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of numbers", param_hint="--mu0"
        ) from None


def _load_policy(path: str) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise click.BadParameter(
            f"cannot read {path!r} as a .npy array: {error}", param_hint="--policy"
        ) from None
    if not isinstance(loaded, np.ndarray):
        raise click.BadParameter(
            f"{path!r} is an .npz archive; save one array with numpy.save", param_hint="--policy"
        )
    if not (np.issubdtype(loaded.dtype, np.floating) or np.issubdtype(loaded.dtype, np.integer)):
        raise click.BadParameter(f"{path!r} holds dtype {loaded.dtype}, not numbers", param_hint="--policy")
    return loaded


def _setting(
    game: MeanFieldGame, horizon: int | None, gamma: float | None, mu0: np.ndarray | None
) -> Setting:
    if gamma is not None:
        if horizon is not None:
            raise click.UsageError("--horizon and --gamma exclude each other (finite horizon or discounted)")
        if not 0.0 <= gamma < 1.0:
            raise click.BadParameter(f"{gamma!r} is not in [0, 1)", param_hint="--gamma")
        return Discounted(gamma=gamma, rho=mu0)
    return FiniteHorizon(horizon=game.default_horizon if horizon is None else horizon, mu0=mu0)


@click.command(name="exploitability", help=_HELP)
@click.option(
    "--game", "game_name", type=click.Choice(GAME_NAMES), default="sis", show_default=True, help="Which game."
)
@click.option(
    "--horizon",
    type=click.IntRange(min=0),
    default=None,
    help="Last decision epoch T [default: sis 50, lq 10].",
)
@click.option(
    "--gamma", type=float, default=None, help="Discount factor: use the discounted (stationary) setting."
)
@click.option(
    "--mu0",
    "mu0_text",
    default=None,
    help="Initial distribution, comma-separated, in state order [default: the game's].",
)
@click.option(
    "--lam", type=click.FloatRange(min=0.0), default=0.0, show_default=True, help="Entropy weight lambda."
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a game parameter (repeatable), e.g. recovery_prob=0.2.",
)
@click.option(
    "--policy", "policy_path", required=True, metavar="FILE.npy", help="Policy array saved with numpy.save."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def exploitability_command(
    game_name: str,
    horizon: int | None,
    gamma: float | None,
    mu0_text: str | None,
    lam: float,
    params: tuple[str, ...],
    policy_path: str,
    as_json: bool,
) -> None:
    if not np.isfinite(lam):
        raise click.BadParameter(f"{lam!r} is not a finite number", param_hint="--lam")
    try:
        game = make_game(game_name, **_parse_params(params))
    except (TypeError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="--param") from None
    mu0 = _parse_mu0(mu0_text) if mu0_text is not None else None
    setting = _setting(game, horizon, gamma, mu0)
    try:
        rho = initial_distribution(game, setting)
    except DistributionError as error:
        raise click.BadParameter(str(error), param_hint="--mu0") from None
    raw = _load_policy(policy_path)
    try:
        policy = as_policy_array(raw, game, setting)
    except PolicyArrayError as error:
        raise click.BadParameter(f"{policy_path}: {error}", param_hint="--policy") from None
    report = evaluate(game, policy, setting, lam)
    if isinstance(setting, FiniteHorizon):
        described = f"finite horizon T={setting.horizon}"
    else:
        described = f"discounted gamma={setting.gamma:g}, stationary mean field"
    if as_json:
        click.echo(
            json.dumps(
                {
                    "game": game_name,
                    "setting": described,
                    "mu0": rho.tolist(),
                    "lam": lam,
                    "policy_value": report.policy_value,
                    "best_response_value": report.best_response_value,
                    "exploitability": report.exploitability,
                }
            )
        )
        return
    click.echo(
        f"game: {game_name}  setting: {described}  mu0: {', '.join(f'{p:g}' for p in rho)}  lam: {lam:g}"
    )
    click.echo(f"policy value         V^pi(mu0) = {report.policy_value:.15g}")
    click.echo(f"best-response value  V^BR(mu0) = {report.best_response_value:.15g}")
    click.echo(f"exploitability            E(pi) = {report.exploitability:.15g}")
