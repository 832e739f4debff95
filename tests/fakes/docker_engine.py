"""A fake Docker Engine API (v1.43 shapes) for one invoker host: list, inspect, update, stats.

Containers are added by the test (:meth:`FakeDockerEngine.add`) with OpenWhisk's names
(``wsk0_7_guest_primes``). ``POST /containers/{id}/update`` changes ``HostConfig.CpuShares`` as
``docker update --cpu-shares`` does; ``stats`` reports the cumulative CPU the test sets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fakes.server import Call, FakeServer, Reply, json_reply

API_VERSION = "1.43"


@dataclass
class FakeContainer:
    id: str
    name: str
    cpu_shares: int = 256
    memory_bytes: int = 256 * 1024 * 1024
    paused: bool = False
    cpu_total_ns: int = 0
    image: str = "openwhisk/action-python-v3.11:latest"

    def summary(self) -> dict[str, Any]:
        state = "paused" if self.paused else "running"
        return {
            "Id": self.id, "Names": [f"/{self.name}"], "Image": self.image, "ImageID": "sha256:" + "ab" * 32,
            "Command": "/bin/sh -c 'cd /pythonAction && python -u pythonrunner.py'", "Created": 1700000000,
            "Ports": [], "Labels": {}, "State": state, "Status": "Up 2 minutes" + (" (Paused)" if self.paused else ""),
            "HostConfig": {"NetworkMode": "bridge"}, "NetworkSettings": {"Networks": {}}, "Mounts": [],
        }

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": self.id, "Created": "2023-11-14T22:13:20.000000000Z", "Path": "/bin/sh", "Args": [],
            "State": {"Status": "paused" if self.paused else "running", "Running": True, "Paused": self.paused,
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 4242, "ExitCode": 0},
            "Image": "sha256:" + "ab" * 32, "Name": f"/{self.name}",
            "HostConfig": {"CpuShares": self.cpu_shares, "Memory": self.memory_bytes, "NetworkMode": "bridge"},
            "Config": {"Image": self.image, "Labels": {}, "Env": []},
        }


class FakeDockerEngine(FakeServer):
    """The subset of the Engine API that ``controller.backends.docker_runtime`` drives."""

    def __init__(self, online_cpus: int = 8) -> None:
        super().__init__()
        self.containers: dict[str, FakeContainer] = {}
        self.online_cpus = online_cpus

    def add(self, name: str, **fields: Any) -> FakeContainer:
        container = FakeContainer(id=f"{len(self.containers) + 1:064x}", name=name, **fields)
        self.containers[container.id] = container
        return container

    def _find(self, ref: str) -> FakeContainer | None:
        ref = unquote(ref)
        return self.containers.get(ref) or next(
            (c for c in self.containers.values() if c.name == ref.lstrip("/") or c.id.startswith(ref)), None
        )

    def route(self, call: Call) -> Reply:
        path = re.sub(r"^/v\d+\.\d+", "", call.path)
        if path == "/_ping":
            return Reply(200, b"OK", "text/plain", {"Api-Version": API_VERSION})
        if path == "/version":
            return json_reply(200, {"Version": "24.0.7", "ApiVersion": API_VERSION, "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"})
        if path == "/containers/json" and call.method == "GET":
            listed = list(self.containers.values())
            filters = json.loads(call.query.get("filters", "{}") or "{}")
            for wanted in filters.get("name", []) if isinstance(filters.get("name"), list) else list(filters.get("name", {})):
                listed = [c for c in listed if wanted in c.name]
            return json_reply(200, [c.summary() for c in listed])
        m = re.fullmatch(r"/containers/([^/]+)/(json|update|stats)", path)
        if m:
            container = self._find(m.group(1))
            if container is None:
                return json_reply(404, {"message": f"No such container: {unquote(m.group(1))}"})
            if m.group(2) == "json" and call.method == "GET":
                return json_reply(200, container.inspect())
            if m.group(2) == "update" and call.method == "POST":
                body = call.body if isinstance(call.body, dict) else {}
                shares = body.get("CpuShares")
                if shares is not None:
                    if not isinstance(shares, int) or shares < 0:
                        return json_reply(400, {"message": f"invalid CpuShares {shares!r}"})
                    container.cpu_shares = shares
                return json_reply(200, {"Warnings": []})
            if m.group(2) == "stats" and call.method == "GET":
                usage = {"total_usage": container.cpu_total_ns, "usage_in_kernelmode": 0, "usage_in_usermode": container.cpu_total_ns}
                return json_reply(200, {
                    "read": "2023-11-14T22:15:00.000000000Z", "name": f"/{container.name}", "id": container.id,
                    "cpu_stats": {"cpu_usage": usage, "system_cpu_usage": 10**15, "online_cpus": self.online_cpus,
                                  "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
                    "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0},
                    "memory_stats": {"usage": 50 * 1024 * 1024, "limit": container.memory_bytes},
                })
        return json_reply(404, {"message": f"page not found: {call.method} {call.path}"})
