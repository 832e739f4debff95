"""NAC-Linear's update with and without the constant columns factored out, by batch size.

    python benchmarks/bench_nac_factoring.py [--sizes 64,128,256,512,1024,2048] [--repeats 30]

The natural step of the judged learner's shape (20 actions, 29 features of which the bias and μ's 10
bins are the same for every function of a tick, serverless critic: 5 TD epochs) on a synthetic tick of
each size: the median CPU time of one update on the direct path (products over all of x's columns, the
580-unknown Fisher system solved by LU) and on the factored one (``policies.nac.FACTOR_MIN_ROWS``:
products over the varying columns and a 1, a 380-unknown system solved by Cholesky), and the largest
relative difference of θ after one update. The learner takes the factored path from
``FACTOR_MIN_ROWS`` rows on; this shows what the threshold leaves on the table below it. (At 10,000
functions, ``bench_serverless_agents.py`` times the whole learner.)

Single core: BLAS limited to one thread before numpy loads.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import statistics
import time

import numpy as np

from policies import nac
from policies.nac import BlockFeatures, NACHyperparameters, NaturalActorCritic, TransitionBatch

N_ACTIONS, STATE_DIM, MU_COLUMNS = 20, 29, slice(11, 21)


def tick(n: int, rng: np.random.Generator) -> TransitionBatch:
    """One tick's transitions of ``n`` functions: features in [0, 1], the bias and μ shared by all rows."""

    def states() -> np.ndarray:
        x = rng.random((n, STATE_DIM))
        x[:, 0] = 1.0
        x[:, MU_COLUMNS] = rng.dirichlet(np.ones(MU_COLUMNS.stop - MU_COLUMNS.start))
        return x

    return TransitionBatch(features=BlockFeatures(states(), N_ACTIONS), next_features=BlockFeatures(states(), N_ACTIONS),
                           actions=rng.integers(0, N_ACTIONS, n), rewards=rng.random(n),
                           next_actions=rng.integers(0, N_ACTIONS, n))


def measure(n: int, factored: bool, repeats: int) -> tuple[float, np.ndarray]:
    """(median CPU ms of an update, θ after the first) on the direct or the factored path."""
    saved = nac.FACTOR_MIN_ROWS
    nac.FACTOR_MIN_ROWS = 1 if factored else n + 1
    try:
        hp = NACHyperparameters(n_features=N_ACTIONS * STATE_DIM, n_actions=N_ACTIONS, critic_lr=0.5,
                                critic_epochs=5, critic_radius=400.0, seed=0)
        learner = NaturalActorCritic(hp)
        batch = tick(n, np.random.default_rng(n))
        learner.update(batch)
        theta = learner.theta.copy()
        times = []
        for _ in range(repeats):
            start = time.process_time()
            learner.update(batch)
            times.append((time.process_time() - start) * 1e3)
        return statistics.median(times), theta
    finally:
        nac.FACTOR_MIN_ROWS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128,256,512,1024,2048",
                        help="comma-separated batch sizes (transitions per update)")
    parser.add_argument("--repeats", type=int, default=30, help="timed updates per size and path")
    args = parser.parse_args()
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give whole numbers separated by commas")
    if any(size < 1 for size in sizes) or args.repeats < 1:
        parser.error("--sizes and --repeats must be positive")
    print("| transitions | direct ms (CPU) | factored ms (CPU) | ratio | θ's largest relative difference |")
    print("|---|---|---|---|---|")
    for n in sizes:
        direct_ms, direct_theta = measure(n, False, args.repeats)
        factored_ms, factored_theta = measure(n, True, args.repeats)
        scale = max(float(np.abs(direct_theta).max()), 1e-300)
        difference = float(np.abs(factored_theta - direct_theta).max()) / scale
        print(f"| {n} | {direct_ms:.2f} | {factored_ms:.2f} | {factored_ms / direct_ms:.2f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
