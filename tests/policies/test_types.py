"""Reasons written when they are read read like a tuple of the same strings."""

from __future__ import annotations

import numpy as np
import pytest

from policies.types import Decisions, LazyReasons, constant_reasons


def _counted(n: int) -> tuple[LazyReasons, list[int]]:
    written: list[int] = []

    def row(i: int) -> str:
        written.append(i)
        return f"row {i}"

    return LazyReasons(n, row), written


def test_a_reason_is_written_only_when_read_and_only_once() -> None:
    reasons, written = _counted(10_000)
    assert len(reasons) == 10_000 and written == []
    assert reasons[7] == "row 7" and reasons[-1] == "row 9999" and reasons[7] == "row 7"
    assert written == [7, 9999]


def test_lazy_reasons_index_slice_iterate_and_compare_as_the_tuple_would() -> None:
    reasons, _ = _counted(6)
    plain = tuple(f"row {i}" for i in range(6))
    assert reasons[1:5:2] == plain[1:5:2] and reasons[::-1] == plain[::-1]
    assert list(reasons) == list(plain) and reasons == plain and plain == reasons
    assert reasons != plain[:5] and reasons != (*plain[:5], "other")
    assert "row 3" in reasons and reasons.index("row 4") == 4
    with pytest.raises(IndexError):
        reasons[6]
    with pytest.raises(IndexError):
        reasons[-7]


def test_constant_reasons_say_no_data_where_nothing_was_decided_and_keep_their_mask() -> None:
    valid = np.array([True, False, True])
    reasons = constant_reasons(valid, "kpa", "no data")
    valid[0] = False  # the caller's array changing afterwards changes nothing
    assert reasons == ("kpa", "no data", "kpa")


def test_decisions_take_lazy_reasons_and_check_their_length() -> None:
    reasons, _ = _counted(3)
    decisions = Decisions(containers=[1, 2, 3], cpu_shares=[-1, -1, -1], valid=[True] * 3, reasons=reasons)
    assert decisions.reasons[2] == "row 2"
    with pytest.raises(ValueError, match="containers"):
        Decisions(containers=[1, 2], cpu_shares=[-1, -1, -1], valid=[True] * 3, reasons=reasons)
