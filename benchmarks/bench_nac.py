"""Speed of the NAC core (policies/nac.py) and of the game drivers (mfg/learning.py), as a table.

Rows:

1. ``SIS iterations/s`` and ``LQ iterations/s`` -- one NAC iteration of the game preset
   (``mfg.learning.preset``): an episode of N agents over the horizon, the critic's backward sweep,
   the Fisher-solve actor, the policy and mean-field steps; exact evaluation excluded.
2. ``decision, 10k agents`` -- :meth:`NaturalActorCritic.act` on dense features (10,000, 9, 64):
   the π(·|s) of every agent and one sampled action each. Target: ≤ 20 ms.
3. ``update, 10k transitions`` -- :meth:`NaturalActorCritic.update` on 10,000 dense transitions of the
   same shape with the default hyperparameters (one whole-batch TD step, Fisher-solve actor).
   Target: ≤ 20 ms.
4. ``block ...`` -- the same two calls on :class:`~policies.nac.BlockFeatures` of the serverless
   agents' shape: x (10,000, 19), 9 actions, d = 171, with the serverless agents' critic settings
   (five whole-batch TD epochs, ``policies.nac_linear.SERVERLESS_NAC_DEFAULTS``) and one
   terminal-free batch. Dense features of that shape would be a 123 MB array per batch side.

Core times are the best and the median of the repeats (wall clock, one BLAS thread); the best is
the least disturbed by other load on the machine.

    python benchmarks/bench_nac.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import time

# One core, as in the acceptance: BLAS threads would otherwise borrow the other core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

from mfg.games import make_game
from mfg.learning import learning_setting, preset, run_nac
from policies.nac import BlockFeatures, NACHyperparameters, NaturalActorCritic, TransitionBatch

N_AGENTS, N_ACTIONS, N_FEATURES = 10_000, 9, 64
#: The serverless agents' state-vector length (policies/serverless_features.py) and their critic
#: settings (policies/nac_linear.py), restated so this benchmark depends on the core only.
STATE_DIM = 19
SERVERLESS_CRITIC = {"critic_lr": 0.5, "critic_epochs": 5, "critic_radius": 400.0}
TARGET_MS = 20.0


def game_rate(name: str, iterations: int) -> tuple[float, int]:
    game = make_game(name)
    setting = learning_setting(game)
    config = preset(name, iterations=iterations, eval_every=iterations, evaluate_regularised=False)
    start = time.perf_counter()
    run_nac(game, setting, config, seed=0)
    elapsed = time.perf_counter() - start
    # Two exact evaluations (first and last) are inside; on these games each takes about 1 ms.
    return iterations / elapsed, config.n_agents * (setting.horizon + 1)


def dense_features(rng: np.random.Generator) -> np.ndarray:
    phi = rng.normal(size=(N_AGENTS, N_ACTIONS, N_FEATURES))
    phi /= np.linalg.norm(phi, axis=2, keepdims=True)
    return phi


def timed_ms(fn, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(best, median) wall time in ms; the best is the least disturbed by other load on the machine."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.min(times)), 1000.0 * float(np.median(times))


def block_timings(rng: np.random.Generator, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(decision, update) (best, median) ms on block features of the serverless agents' shape."""

    def states() -> BlockFeatures:
        x = rng.normal(size=(N_AGENTS, STATE_DIM))
        x *= rng.uniform(0.2, 1.0, size=(N_AGENTS, 1)) / np.linalg.norm(x, axis=1, keepdims=True)
        return BlockFeatures(x, N_ACTIONS)

    hp = NACHyperparameters(
        n_features=N_ACTIONS * STATE_DIM, n_actions=N_ACTIONS, seed=0, **SERVERLESS_CRITIC
    )
    learner = NaturalActorCritic(hp)
    learner.theta = rng.normal(scale=0.5, size=hp.n_features)
    phi = states()
    batch = TransitionBatch(
        features=phi,
        actions=rng.integers(0, N_ACTIONS, N_AGENTS),
        rewards=rng.uniform(size=N_AGENTS),
        next_features=states(),
        next_actions=rng.integers(0, N_ACTIONS, N_AGENTS),
    )
    return timed_ms(lambda: learner.act(phi), repeats), timed_ms(lambda: learner.update(batch), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per core measurement")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    phi, phi_next = dense_features(rng), dense_features(rng)
    learner = NaturalActorCritic(NACHyperparameters(n_features=N_FEATURES, n_actions=N_ACTIONS, seed=0))
    learner.theta = rng.normal(scale=0.5, size=N_FEATURES)
    batch = TransitionBatch(
        features=phi,
        actions=rng.integers(0, N_ACTIONS, N_AGENTS),
        rewards=rng.uniform(size=N_AGENTS),
        next_features=phi_next,
        next_actions=rng.integers(0, N_ACTIONS, N_AGENTS),
    )
    decide, decide_median = timed_ms(lambda: learner.act(phi), args.repeats)
    update, update_median = timed_ms(lambda: learner.update(batch), args.repeats)
    block_decide, block_update = block_timings(rng, args.repeats)
    sis_rate, sis_batch = game_rate("sis", 100)
    lq_rate, lq_batch = game_rate("lq", 50)

    rows = [
        ("SIS NAC iterations/s", f"{sis_rate:.1f}", f"{sis_batch} transitions/iteration"),
        ("LQ NAC iterations/s", f"{lq_rate:.1f}", f"{lq_batch} transitions/iteration"),
        (
            "decision, 10k agents (ms)",
            f"{decide:.2f}",
            f"median {decide_median:.2f}; target <= {TARGET_MS:.0f}: {'ok' if decide <= TARGET_MS else 'MISSED'}",
        ),
        (
            "update, 10k transitions (ms)",
            f"{update:.2f}",
            f"median {update_median:.2f}; target <= {TARGET_MS:.0f}: {'ok' if update <= TARGET_MS else 'MISSED'}",
        ),
    ]
    for label, (best, median) in (
        ("block decision, 10k agents (ms)", block_decide),
        ("block update, 10k transitions (ms)", block_update),
    ):
        verdict = "ok" if best <= TARGET_MS else "MISSED"
        rows.append((label, f"{best:.2f}", f"median {median:.2f}; target <= {TARGET_MS:.0f}: {verdict}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    print(
        f"(dense features {N_AGENTS} x {N_ACTIONS} actions x {N_FEATURES}; block features x: {N_AGENTS} x "
        f"{STATE_DIM}, {N_ACTIONS} actions, d = {N_ACTIONS * STATE_DIM}; best of {args.repeats} repeats)"
    )


if __name__ == "__main__":
    main()
