"""How long the daemon's tick takes while localwhisk runs a steady load, against its interval.

Run: ``python benchmarks/bench_daemon_under_load.py [--rate 400] [--seconds 60] [--interval 10]
[--functions 4] [--policy openwhisk-default]``.

Three processes, as an operator runs them, on 127.0.0.1: ``python -m localwhisk`` (cgroups off),
a load generator (this file with ``--generate``) offering ``--rate`` non-blocking invocations a
second of a trivial Python action, spread over ``--functions`` actions on a fixed schedule, and
``mfrm run --backend local -v`` ticking every ``--interval`` s. Every tick reads the activations of
its look-back (``local.lookback_s``, 120 s: at 400/s that is up to 48,000 records, 240 pages), the
pools and the status.

Prints one row: the rate offered, accepted (202; beyond the platform's queue of 1,000 it answers
429) and completed (until its queue drained), the daemon's tick duration
(median, 95th percentile and maximum over the ticks that ran under load, from its log), the
interval, the overruns (``mfrm_tick_overruns_total``) and failed ticks, and the invocations the
daemon counted against those that completed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from localwhisk.testing import TEST_AUTH, WhiskClient, free_port, http_get, stop_process_group, wait_until

CODE = "def main(args):\n    return {'ok': True}\n"
TICK_LINE = re.compile(r"controller\.daemon\.service: tick (\d+) \(loop time ([\d.]+) s\) in ([\d.]+) ms")


def generate(url: str, names: list[str], rate: float, seconds: float, threads: int) -> None:
    """Offer ``rate`` invocations a second for ``seconds``, round robin over ``names``; print the
    count sent and refused as JSON. Each thread keeps its own connection and its own slice of the
    schedule (invocation k at start + k / rate), so the load does not drift when one call is slow."""
    start = time.monotonic() + 0.5
    total = int(rate * seconds)
    sent = [0] * threads
    refused = [0] * threads

    def worker(j: int) -> None:
        client = WhiskClient(url, TEST_AUTH)
        pause = threading.Event()
        for k in range(j, total, threads):
            pause.wait(max(0.0, start + k / rate - time.monotonic()))
            status, _ = client.invoke(names[k % len(names)], {}, blocking=False)
            if status == 202:
                sent[j] += 1
            else:
                refused[j] += 1
        client.close()

    pool = [threading.Thread(target=worker, args=(j,), daemon=True) for j in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps({"sent": sum(sent), "refused": sum(refused), "seconds": time.monotonic() - start}))


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def completed(url: str) -> float:
    """Activations the platform completed, from its user-events metrics."""
    _, body = http_get(url + "/metrics")
    return sum(float(v) for v in re.findall(r"^openwhisk_action_activations_total\{[^}]*\} ([0-9.e+-]+)$",
                                             body.decode(), re.MULTILINE))


def run(args: argparse.Namespace) -> dict[str, float]:
    names = [f"hello-{i + 1}" for i in range(args.functions)]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp_path = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        whisk = subprocess.Popen(
            [sys.executable, "-m", "localwhisk", "--port", str(port), "--state-dir", str(tmp_path / "state"),
             "--cgroups", "off"], env={**os.environ, "LOCALWHISK_AUTH": TEST_AUTH},
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "localwhisk.log").open("wb"), start_new_session=True)
        stack.callback(stop_process_group, whisk)
        wait_until("localwhisk", lambda: http_get(url + "/ping")[0] == 200, 60, whisk)
        client = WhiskClient(url, TEST_AUTH)
        for name in names:
            status, body = client.put_action(name, CODE)
            assert status == 200, body
            client.invoke(name, {}, blocking=True)  # one warm container each before the load
        slo = tmp_path / "slo.json"
        slo.write_text(json.dumps({"functions": [{"function": "hello", "slo_ms": 500.0}]}))
        metrics_port = free_port()
        log = tmp_path / "daemon.log"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--backend", "local", "--interval", str(args.interval),
             "--policy", args.policy, "--metrics-port", str(metrics_port), "-v",
             "--set", "daemon.metrics_host=127.0.0.1", "--set", f"local.api_host={url}",
             "--set", f"local.slo_file={slo}", "--set", f"local.functions={json.dumps(names)}",
             "--set", f"local.lookback_s={args.lookback}", "--set", f"output.out_dir={tmp_path / 'out'}"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("MFRM_")}, "MFRM_LOCAL__AUTH": TEST_AUTH},
            stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True)
        stack.callback(stop_process_group, daemon)
        wait_until("the daemon's first tick", lambda: TICK_LINE.search(log.read_text(errors="replace")), 120, daemon)
        before = completed(url)
        load_started = time.monotonic()
        generator = subprocess.run(
            [sys.executable, __file__, "--generate", url, "--rate", str(args.rate), "--seconds", str(args.seconds),
             "--functions", str(args.functions), "--threads", str(args.threads)],
            capture_output=True, text=True, check=True)
        offered = json.loads(generator.stdout)
        load_s = offered["seconds"]
        # The platform finishes its queue, then the daemon ticks twice more to count what completed.
        wait_until("the platform's queue to drain", lambda: completed(url) - before >= offered["sent"], 300,
                   poll_s=1.0)
        drained_s = time.monotonic() - load_started
        ticks_before = len(TICK_LINE.findall(log.read_text(errors="replace")))
        wait_until("two more ticks", lambda: len(TICK_LINE.findall(log.read_text(errors="replace"))) >= ticks_before + 2,
                   4 * args.interval + 60, daemon, poll_s=0.5)
        done = completed(url) - before
        _, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        text = body.decode()
        seen = sum(metric(text, "mfrm_invocations_total", f'{{function="{name}"}}') for name in names)
        durations_ms = [float(ms) for _, loop_s, ms in TICK_LINE.findall(log.read_text(errors="replace"))
                        if float(loop_s) > 2 * args.interval]  # past the first ticks, under load
        return {
            "offered_per_s": (offered["sent"] + offered["refused"]) / load_s, "accepted_per_s": offered["sent"] / load_s,
            "refused": offered["refused"], "completed_per_s": done / drained_s,
            "ticks": len(durations_ms), "tick_p50_s": statistics.median(durations_ms) / 1000,
            "tick_p95_s": sorted(durations_ms)[int(0.95 * (len(durations_ms) - 1))] / 1000,
            "tick_max_s": max(durations_ms) / 1000, "interval_s": args.interval,
            "overruns": metric(text, "mfrm_tick_overruns_total"),
            "failed_ticks": metric(text, "mfrm_ticks_total", '{result="failed"}'),
            "counted": seen, "completed": done,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=400.0, help="invocations offered per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load, s")
    parser.add_argument("--interval", type=float, default=10.0, help="the daemon's interval, s")
    parser.add_argument("--functions", type=int, default=4, help="actions the load is spread over")
    parser.add_argument("--threads", type=int, default=16, help="threads of the load generator")
    parser.add_argument("--policy", default="openwhisk-default", help="the daemon's policy")
    parser.add_argument("--lookback", type=float, default=120.0, help="local.lookback_s, s (the default: 120)")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, [f"hello-{i + 1}" for i in range(args.functions)], args.rate, args.seconds,
                 args.threads)
        return
    result = run(args)
    print(json.dumps(result, indent=2))
    print(f"\n| offered /s | accepted /s | completed /s | ticks | tick p50 | tick p95 | tick max | interval | overruns "
          f"| failed | counted / completed |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {result['offered_per_s']:.0f} | {result['accepted_per_s']:.0f} | {result['completed_per_s']:.0f} "
          f"| {result['ticks']} "
          f"| {result['tick_p50_s']:.2f} s | {result['tick_p95_s']:.2f} s | {result['tick_max_s']:.2f} s "
          f"| {result['interval_s']:g} s | {result['overruns']:.0f} | {result['failed_ticks']:.0f} "
          f"| {result['counted']:.0f} / {result['completed']:.0f} |")


if __name__ == "__main__":
    main()
