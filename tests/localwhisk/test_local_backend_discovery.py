"""The ``local`` backend's discovery of the actions to manage (``local.functions`` empty), against a
real localwhisk holding more actions than one page of OpenWhisk's list (200)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.backends.local import ACTIONS_PAGE, deployed_actions, from_settings
from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
from controller.settings import load_settings
from localwhisk.testing import TEST_AUTH, WhiskClient, running_platform

CODE = "def main(args):\n    return {}\n"
#: More than two full pages, and a last page that is not full.
DEPLOYED = 2 * ACTIONS_PAGE + 57


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    names = [f"primes-{i}" for i in range(1, DEPLOYED + 1)]
    with running_platform(tmp_path_factory.mktemp("crowded"), cgroups="off") as (whisk, client):
        for name in names:
            status, _ = client.put_action(name, CODE)
            assert status == 200
        yield whisk.url, names


def test_discovery_lists_every_action_once_past_the_first_page(crowded: tuple[str, list[str]]) -> None:
    url, names = crowded
    found = deployed_actions(OpenWhiskClient(url, TEST_AUTH, retry=NO_RETRY))
    assert len(found) == len(set(found)) == DEPLOYED
    assert set(found) == set(names)


def test_discovery_with_pages_smaller_than_asked_still_ends_with_every_action(crowded: tuple[str, list[str]]) -> None:
    url, names = crowded
    assert set(deployed_actions(OpenWhiskClient(url, TEST_AUTH, retry=NO_RETRY), page=37)) == set(names)


def test_an_empty_functions_list_manages_every_deployed_action(
    crowded: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("MFRM_")]:
        monkeypatch.delenv(name)
    url, names = crowded
    slo_file = tmp_path / "solo.json"
    slo_file.write_text(json.dumps({"functions": [{"function": "primes", "slo_ms": 350.0}]}), encoding="utf-8")
    settings = load_settings(overrides={"daemon.backend": "local", "local": {
        "api_host": url, "auth": TEST_AUTH, "slo_file": str(slo_file), "functions": [], "cores": 2}})
    backend = from_settings(settings)
    assert sorted(backend.function_names) == sorted(names)


def test_the_platform_pages_its_actions_list_with_limit_and_skip(crowded: tuple[str, list[str]]) -> None:
    url, _ = crowded
    client = WhiskClient(url)
    pages = [client.request("GET", f"/api/v1/namespaces/_/actions?limit={ACTIONS_PAGE}&skip={skip}")[1]
             for skip in range(0, DEPLOYED + ACTIONS_PAGE, ACTIONS_PAGE)]
    client.close()
    assert [len(p) for p in pages] == [ACTIONS_PAGE, ACTIONS_PAGE, DEPLOYED - 2 * ACTIONS_PAGE, 0]
