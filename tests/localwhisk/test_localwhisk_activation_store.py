"""The activation store's listing: OpenWhisk's semantics (newest first; since/upto inclusive; name;
skip; limit 30 by default, 200 at most, 0 for the most) on a store with many records, checked against
a plain filter-and-sort of the same records."""

from __future__ import annotations

import random
from typing import Any

import pytest

from localwhisk.store import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, ActivationStore

NAMES = ("alpha", "beta", "gamma", "delta")
NAMESPACES = ("guest", "other")


def record(activation_id: str, start: int, name: str = "alpha", namespace: str = "guest") -> dict[str, Any]:
    return {"activationId": activation_id, "namespace": namespace, "name": name, "start": start, "end": start + 5}


def reference(
    kept: list[dict[str, Any]], namespace: str, name: str | None, since: int | None, upto: int | None, skip: int, limit: int
) -> list[str]:
    """The listing by brute force: filter, sort by (start, order added) descending, slice."""
    chosen = [
        (r["start"], i, r["activationId"]) for i, r in enumerate(kept)
        if r["namespace"] == namespace and (name is None or r["name"] == name)
        and (since is None or r["start"] >= since) and (upto is None or r["start"] <= upto)
    ]
    chosen.sort(reverse=True)
    return [a for _, _, a in chosen[skip:skip + limit]]


@pytest.fixture(scope="module")
def crowded() -> tuple[ActivationStore, list[dict[str, Any]]]:
    """30,000 records added in nearly (not exactly) start order, many sharing a start, in a store
    that keeps 20,000: the oldest third or so has been dropped."""
    rng = random.Random(11)
    store = ActivationStore(capacity=20_000)
    added = []
    for i in range(30_000):
        doc = record(f"a{i:05d}", 1_000 + i // 3 + rng.randint(0, 40), rng.choice(NAMES), rng.choice(NAMESPACES))
        store.add(doc)
        added.append(doc)
    assert 19_800 <= len(store) <= 20_000
    return store, added[-len(store):]


def test_random_queries_list_what_a_full_filter_and_sort_lists(crowded: tuple[ActivationStore, list[dict[str, Any]]]) -> None:
    store, kept = crowded
    rng = random.Random(5)
    for _ in range(400):
        namespace = rng.choice(NAMESPACES)
        name = rng.choice((None, *NAMES))
        since = rng.choice((None, rng.randint(0, 12_000)))
        upto = rng.choice((None, rng.randint(5_000, 12_000)))
        skip = rng.choice((0, rng.randint(0, 50), rng.randint(0, 8_000)))
        limit = rng.randint(1, MAX_LIST_LIMIT)
        query = (namespace, name, since, upto, skip, limit)
        listed = store.list(namespace, name=name, limit=limit, skip=skip, since_ms=since, upto_ms=upto)
        assert [r["activationId"] for r in listed] == reference(kept, *query), query


def test_paging_with_skip_walks_a_time_window_once_without_gaps(crowded: tuple[ActivationStore, list[dict[str, Any]]]) -> None:
    store, kept = crowded
    pages, skip = [], 0
    while page := store.list("guest", since_ms=6_000, upto_ms=7_000, skip=skip, limit=MAX_LIST_LIMIT):
        pages += [r["activationId"] for r in page]
        skip += len(page)
    assert pages == reference(kept, "guest", None, 6_000, 7_000, 0, len(kept))
    assert len(pages) == len(set(pages)) > MAX_LIST_LIMIT


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["e", "d", "c", "b", "a"]),
        ({"since_ms": 20, "upto_ms": 30}, ["e", "d", "c", "b"]),
        ({"since_ms": 21, "upto_ms": 29}, []),
        ({"upto_ms": 10}, ["a"]),
        ({"name": "beta"}, ["d"]),
        ({"name": "nobody"}, []),
        ({"skip": 1, "limit": 2}, ["d", "c"]),
        ({"skip": 5}, []),
    ],
    ids=["newest-first-equal-starts-last-added-first", "since-and-upto-inclusive", "empty-window", "upto-only",
         "by-name", "unknown-name", "skip-and-limit", "skip-past-the-end"],
)
def test_listing_semantics(query: dict[str, Any], expected: list[str]) -> None:
    store = ActivationStore(capacity=100)
    for activation_id, start, name in [("a", 10, "alpha"), ("b", 20, "alpha"), ("c", 30, "alpha"), ("d", 30, "beta"),
                                       ("e", 30, "alpha")]:
        store.add(record(activation_id, start, name))
    assert [r["activationId"] for r in store.list("guest", **query)] == expected


@pytest.mark.parametrize(("limit", "size"), [(None, DEFAULT_LIST_LIMIT), (0, MAX_LIST_LIMIT), (10_000, MAX_LIST_LIMIT), (7, 7)],
                         ids=["default", "zero-means-the-most", "clamped", "as-asked"])
def test_page_sizes_follow_openwhisk(limit: int | None, size: int) -> None:
    store = ActivationStore(capacity=1_000)
    for i in range(500):
        store.add(record(f"a{i}", i))
    assert len(store.list("guest", limit=limit)) == size


def test_a_record_added_twice_is_listed_once_with_its_latest_content() -> None:
    store = ActivationStore(capacity=10)
    store.add(record("same", 10))
    store.add(record("same", 50) | {"end": 99})
    assert [(r["activationId"], r["end"]) for r in store.list("guest")] == [("same", 99)]
    assert store.list("guest", upto_ms=20) == [] and len(store) == 1


def test_a_full_store_drops_the_oldest_hundredth_of_its_capacity_at_once() -> None:
    store = ActivationStore(capacity=1_000)
    for i in range(1_001):
        store.add(record(f"a{i}", i))
    assert len(store) == 990
    assert store.get("guest", "a10") is None and store.get("guest", "a11") is not None
    assert store.list("guest", upto_ms=10) == []


def test_records_dropped_for_capacity_leave_every_listing() -> None:
    store = ActivationStore(capacity=3)
    for i, name in enumerate(["alpha", "beta", "alpha", "alpha"]):
        store.add(record(f"a{i}", 100 - i, name))  # the oldest added has the latest start
    assert [r["activationId"] for r in store.list("guest")] == ["a1", "a2", "a3"]
    assert [r["activationId"] for r in store.list("guest", name="alpha")] == ["a2", "a3"]
    assert store.get("guest", "a0") is None
