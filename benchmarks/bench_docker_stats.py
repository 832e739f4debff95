"""How long reading one Docker host's action containers takes, against how many there are.

Run (the engine of ``scripts/docker-engine.sh`` must be up): ``python benchmarks/bench_docker_stats.py
[--running 6 12] [--paused 6] [--repeat 3] [--gap-s 2]``.

For each count of running containers, with none paused and then with ``--paused`` more that are
paused, the script starts containers named as OpenWhisk's invoker names them (busybox ``sleep``,
``--network none``), reads the host ``--repeat`` times and prints the median and the largest wall
time of one read, three ways:

* **one after another**: list, then per container an inspect and a one-shot ``stats``, paused or
  not, each call waiting for the one before: the calls the driver made before it read a host's
  containers at once and stopped asking ``stats`` of paused ones, kept here as the reference;
* **driver**: ``DockerRuntime.read()`` as the daemon calls it every tick;
* **no CPU**: ``DockerRuntime(read_cpu=False).read()``: list and inspect only.

Reads are ``--gap-s`` apart, as a daemon's ticks are (Docker 20.10 answers a one-shot ``stats`` at
once only when no ``stats`` call was made in the last second or so; otherwise it waits for its next
one-second collection). The first read of each driver negotiates the API version and is not timed.
Every container the script starts carries a label with its process id and is removed at the end,
also when it fails; the engine is shared, so another user's ``stats`` calls can lengthen a read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors
from rich.console import Console
from rich.table import Table

from controller.backends.docker_runtime import DockerRuntime

ENV_FILE = Path(os.environ.get("TEST_DOCKER_STATE_DIR", "/var/lib/mfrm-docker-engine")) / "env"
LABEL = "mfrm-bench.docker-stats.pid"
"""Label on every container the script starts: the id of the process that started it."""
TIMEOUT_S = 30.0
"""Limit on one Engine API call, s."""


def engine_env() -> dict[str, str]:
    if not ENV_FILE.is_file():
        raise SystemExit(f"no Docker engine: {ENV_FILE} is missing; "
                         "run `bash scripts/docker-engine.sh` first")
    lines = ENV_FILE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@contextmanager
def containers(api: docker.APIClient, image: str, running: int, paused: int) -> Iterator[list[str]]:
    """``running`` + ``paused`` action containers, removed on the way out."""
    made: list[str] = []
    try:
        for n in range(running + paused):
            name = f"wsk0_{os.getpid()}{n:03d}_guest_bench{n}"
            host_config = api.create_host_config(network_mode="none", mem_limit=128 * 1024 * 1024)
            created = api.create_container(image, command=["sleep", "3600"], name=name,
                                           host_config=host_config, labels={LABEL: str(os.getpid())})
            made.append(created["Id"])
            api.start(created["Id"])
            if n >= running:
                api.pause(created["Id"])
        yield made
    finally:
        for container_id in made:
            try:
                api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass


def one_after_another(api: docker.APIClient) -> Callable[[], int]:
    """The reference read: every call waits for the one before. Returns the containers read."""

    def read() -> int:
        listed = [c for c in api.containers(filters={"name": "wsk"}) if c["Names"][0].startswith("/wsk")]
        for item in listed:
            api.inspect_container(item["Id"])
            api.stats(item["Id"], stream=False, one_shot=True)
        return len(listed)

    return read


def driver_read(runtime: DockerRuntime) -> Callable[[], int]:
    def read() -> int:
        view = runtime.read()
        if view.failed:
            raise SystemExit(f"the driver could not read the host: {view.failed}")
        return len(view.containers)

    return read


def timed(read: Callable[[], int], repeat: int, gap_s: float, expected: int) -> list[float]:
    """Wall time of each of ``repeat`` reads, s, after one untimed read; ``gap_s`` between reads."""
    pause = threading.Event()  # waits between reads without busy-looping
    read()
    seconds = []
    for _ in range(repeat):
        pause.wait(gap_s)
        started = time.perf_counter()
        found = read()
        seconds.append(time.perf_counter() - started)
        if found < expected:
            raise SystemExit(f"a read found {found} action containers, {expected} were started")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--running", type=int, nargs="+", default=[6, 12], help="running containers per case")
    parser.add_argument("--paused", type=int, default=6,
                        help="paused containers added in the second case of each count")
    parser.add_argument("--repeat", type=int, default=3, help="timed reads per way and case")
    parser.add_argument("--gap-s", type=float, default=2.0, help="time between two reads, s")
    args = parser.parse_args()
    env = engine_env()
    url, image = env["TEST_DOCKER_SOCKET"], env["TEST_DOCKER_IMAGE"]
    table = Table(title=f"one read of a Docker host ({url}), s: median / largest of {args.repeat}")
    for column in ("running", "paused", "one after another", "driver", "no CPU"):
        table.add_column(column, justify="right")
    with docker.APIClient(base_url=url, version="auto", timeout=TIMEOUT_S) as api:
        foreign = [c["Names"][0] for c in api.containers(filters={"name": "wsk"})]
        if foreign:
            print(f"note: {len(foreign)} other wsk container(s) on the engine are read as well: "
                  f"{foreign[:3]}")
        for running in args.running:
            for paused in (0, args.paused):
                with containers(api, image, running, paused):
                    cells = []
                    driver = DockerRuntime({"invoker0": url}, timeout_s=TIMEOUT_S)
                    no_cpu = DockerRuntime({"invoker0": url}, timeout_s=TIMEOUT_S, read_cpu=False)
                    try:
                        for read in (one_after_another(api), driver_read(driver), driver_read(no_cpu)):
                            seconds = timed(read, args.repeat, args.gap_s, running + paused)
                            cells.append(f"{statistics.median(seconds):.2f} / {max(seconds):.2f}")
                    finally:
                        driver.close()
                        no_cpu.close()
                    table.add_row(str(running), str(paused), *cells)
    Console().print(table)


if __name__ == "__main__":
    main()
