"""A fake Docker Engine API for one invoker host: version, list, inspect, update, stats.

Containers are added by the test (:meth:`FakeDockerEngine.add`) with OpenWhisk's names
(``wsk0_7_guest_primes``). ``POST /containers/{id}/update`` changes ``HostConfig.CpuShares`` as
``docker update --cpu-shares`` does, and refuses a value runc refuses (below 2, above 262144) with HTTP
500 and runc's message, as the real engine does; ``stats`` reports the cumulative CPU the test sets.

Versions as an engine handles them: the unversioned ``GET /version`` says which Engine API versions
it speaks (``ApiVersion``, ``MinAPIVersion``; by default those of Docker 27, 1.47 down to 1.24), and
a request under ``/vX.Y/`` outside that range is refused with HTTP 400 and Docker's own message
("client version 1.43 is too new. Maximum supported API version is 1.41"). The other answers have the
shapes of Engine API 1.41 to 1.44 (the versions the driver speaks; they do not differ for these
endpoints), and the ``/version`` answer is shaped like a real Docker 20.10's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fakes.server import Call, FakeServer, Reply, json_reply

#: Defaults: the Engine API range of Docker 27.
API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "27.5.1"


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


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

    def __init__(self, online_cpus: int = 8, *, api_version: str = API_VERSION,
                 min_api_version: str = MIN_API_VERSION, engine_version: str = ENGINE_VERSION) -> None:
        super().__init__()
        self.containers: dict[str, FakeContainer] = {}
        self.online_cpus = online_cpus
        self.api_version = api_version
        """Newest Engine API version this engine speaks (``ApiVersion``); a test may change it, as an
        upgrade of the engine would."""
        self.min_api_version = min_api_version
        """Oldest Engine API version it still accepts (``MinAPIVersion``)."""
        self.engine_version = engine_version
        """Docker release it claims to be."""

    def add(self, name: str, **fields: Any) -> FakeContainer:
        container = FakeContainer(id=f"{len(self.containers) + 1:064x}", name=name, **fields)
        self.containers[container.id] = container
        return container

    def _find(self, ref: str) -> FakeContainer | None:
        ref = unquote(ref)
        return self.containers.get(ref) or next(
            (c for c in self.containers.values() if c.name == ref.lstrip("/") or c.id.startswith(ref)), None
        )

    def _refusal(self, requested: str) -> Reply | None:
        """Docker's answer to a request at an API version it does not speak, None if it speaks it."""
        if _version(requested) > _version(self.api_version):
            return json_reply(400, {"message": f"client version {requested} is too new. Maximum supported API "
                                               f"version is {self.api_version}"})
        if _version(requested) < _version(self.min_api_version):
            return json_reply(400, {"message": f"client version {requested} is too old. Minimum supported API "
                                               f"version is {self.min_api_version}, please upgrade your client "
                                               "to a newer version"})
        return None

    def route(self, call: Call) -> Reply:
        versioned = re.match(r"^/v(\d+\.\d+)(/.*)$", call.path)
        path = call.path
        if versioned:
            refusal = self._refusal(versioned.group(1))
            if refusal is not None:
                return refusal
            path = versioned.group(2)
        if path == "/_ping":
            return Reply(200, b"OK", "text/plain", {"Api-Version": self.api_version})
        if path == "/version":
            details = {"ApiVersion": self.api_version, "MinAPIVersion": self.min_api_version, "Os": "linux",
                       "Arch": "amd64", "GitCommit": "4c9b3b0", "GoVersion": "go1.22.11"}
            return json_reply(200, {
                "Platform": {"Name": "Docker Engine - Community"},
                "Components": [{"Name": "Engine", "Version": self.engine_version, "Details": details}],
                "Version": self.engine_version, **details, "KernelVersion": "6.1.0-28-amd64",
                "BuildTime": "2025-01-21T16:23:14.000000000+00:00",
            })
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
                    if not isinstance(shares, int):
                        return json_reply(400, {"message": f"invalid CpuShares {shares!r}"})
                    if shares != 0 and not 2 <= shares <= 262144:  # 0 is "the default"; runc refuses the rest
                        bound = "minimum allowed cpu-shares is 2" if shares < 2 else "maximum allowed cpu-shares is 262144"
                        return json_reply(500, {"message": f"Cannot update container {container.id}: runc did not "
                                                           f"terminate successfully: exit status 1: the {bound}\n: unknown"})
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
