"""The records' choice: each function's level of least miss rate + W · idle memory."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np

from policies.agent import AgentStep, SharedPolicyAgent
from policies.record import LevelRecord
from policies.staffing import action_index
from benchmark_scripts import ROOT, load, script

SCRIPT = script("record_greedy")
greedy = load("record_greedy")


def test_each_function_follows_its_cheapest_level_by_record_and_a_new_one_the_histogram() -> None:
    record = LevelRecord(("platform", "kpa=0.7", "hist"))
    record._clear(3)
    record.arrivals = np.array([2.0, 2.0, 0.0])
    # function 0: the platform misses nothing but holds memory; the KPA misses half; hist a little of both
    record.miss = np.array([[0.0, 0.2, 0.0], [1.0, 0.2, 0.0], [0.2, 0.2, 0.0]])
    record.idle = np.array([[0.05, 0.05, 0.0], [0.0, 0.0, 0.0], [0.01, 0.01, 0.0]])
    agent = SimpleNamespace(record=record)
    cheap_memory = greedy.record_choice(agent, weight=1.0).tolist()
    dear_memory = greedy.record_choice(agent, weight=100.0).tolist()
    assert cheap_memory == [action_index("platform"), action_index("kpa=0.7"), action_index("hist")]
    assert dear_memory == [action_index("kpa=0.7"), action_index("kpa=0.7"), action_index("hist")]


def test_a_negative_weight_is_one_line() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "x.yaml", "--weight", "-1"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode != 0 and "--weight -1.0: must be >= 0" in done.stderr and "Traceback" not in done.stderr


def test_a_held_choice_stays_until_the_records_choose_again(monkeypatch) -> None:
    record = LevelRecord(("platform", "kpa=0.7", "hist"))
    record._clear(2)
    record.arrivals = np.array([1.0, 1.0])
    record.miss = np.array([[0.0, 0.5], [0.5, 0.0], [0.5, 0.5]])
    record.idle = np.zeros((3, 2))
    agent = SimpleNamespace(record=record, _held=None)

    def step(decided: bool, actions: list[int]) -> AgentStep:
        return AgentStep(0.0, ("f", "g"), np.zeros((2, 1)), np.ones(2, bool), np.array(actions), np.ones((2, 3)) / 3,
                         decided=decided)

    drawn = iter([step(True, [7, 7]), step(False, [5, 6])])
    monkeypatch.setattr(SharedPolicyAgent, "_observe", lambda self, snapshot, mu: next(drawn))
    greedy.follow_records(1.0)
    first = SharedPolicyAgent._observe(agent, None, None)
    assert first.actions.tolist() == [action_index("platform"), action_index("kpa=0.7")] and agent._held is first
    record.miss = record.miss[::-1].copy()  # the records change, but the choice is held
    assert SharedPolicyAgent._observe(agent, None, None).actions.tolist() == [5, 6]


def test_a_hold_of_no_tick_is_one_line() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "x.yaml", "--weight", "1", "--hold-ticks", "0"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0 and "--hold-ticks 0: must be >= 1" in done.stderr and "Traceback" not in done.stderr
