"""OpenWhisk's default manager: containers left to the platform, shares in proportion to memory."""

from __future__ import annotations

import numpy as np
import pytest
from baseline_fixtures import MU, invokers, snapshot

from policies.baselines.openwhisk_default import OpenWhiskDefaultConfig, OpenWhiskDefaultPolicy
from policies.types import KEEP_SHARES, UNMANAGED

# (action memory MB, invoker user memory MB) -> max(floor(1024 / (userMemory // memory)), 2)
SHARES = [
    (256.0, 2048.0, 128),
    (128.0, 2048.0, 64),
    (512.0, 4096.0, 128),
    (300.0, 2048.0, 170),  # 2048 // 300 = 6 containers fit: 1024 / 6, not 1024 x 300 / 2048 = 150
    (2048.0, 2048.0, 1024),
    (1.0, 2048.0, 2),  # 0.5 share rounds down to 0, Docker's minimum is 2
    (4096.0, 2048.0, 1024),  # does not fit at all: one core's worth keeps the rule defined
]


@pytest.mark.parametrize(
    ("memory_mb", "user_memory_mb", "expected"),
    SHARES,
    ids=[
        "256MB-of-2048MB",
        "128MB-of-2048MB",
        "512MB-of-4096MB",
        "300MB-integer-division",
        "whole-invoker",
        "tiny",
        "too-big",
    ],
)
def test_openwhisk_gives_shares_in_proportion_to_memory(
    memory_mb: float, user_memory_mb: float, expected: int
) -> None:
    tick = snapshot(10.0, memory_mb=memory_mb, cluster=invokers(memory_mb=user_memory_mb))
    decisions = OpenWhiskDefaultPolicy().decide(tick, MU)
    assert decisions.cpu_shares[0] == expected
    assert decisions.containers[0] == UNMANAGED
    assert decisions.valid[0]


def test_the_reason_names_memory_user_memory_and_shares() -> None:
    decisions = OpenWhiskDefaultPolicy().decide(snapshot(10.0), MU)
    assert decisions.reasons[0] == "openwhisk-default: 256 MB of 2048 MB -> 128 shares"


def test_without_invoker_data_the_shares_are_kept_unless_user_memory_is_configured() -> None:
    blind = snapshot(10.0, cluster=invokers(valid=False))
    assert OpenWhiskDefaultPolicy().decide(blind, MU).cpu_shares[0] == KEEP_SHARES
    pinned = OpenWhiskDefaultPolicy(OpenWhiskDefaultConfig(user_memory_mb=4096.0))
    assert pinned.decide(blind, MU).cpu_shares[0] == 64


def test_a_vectorised_decision_matches_the_rule_for_every_function() -> None:
    memory = np.array([128.0, 256.0, 512.0, 1024.0])
    tick = snapshot(10.0, names=("a", "b", "c", "d"), memory_mb=memory)
    assert OpenWhiskDefaultPolicy().decide(tick, MU).cpu_shares.tolist() == [64, 128, 256, 512]
