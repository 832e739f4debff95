"""A fake Kubernetes API server (core/v1 shapes) holding OpenWhisk action pods.

Pods are added by the test with the names and labels OpenWhisk's KubernetesContainerFactory gives
them (``wsk0-7-guest-primes``, labels ``invoker``, ``name``, ``user-action-pod``). ``PATCH
.../pods/{name}/resize`` applies a strategic-merge patch of container resources (in-place pod
resize); ``resize_supported=False`` answers 404 as a cluster without the subresource does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fakes.server import Call, FakeServer, Reply, json_reply


def _status(code: int, reason: str, message: str) -> Reply:
    return json_reply(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": message, "reason": reason, "code": code})


@dataclass
class FakePod:
    name: str
    namespace: str
    invoker: str
    cpu: str | None = "250m"
    memory: str = "256Mi"
    phase: str = "Running"
    node: str = "worker-0"
    extra_labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        resources: dict[str, dict[str, str]] = {"requests": {"memory": self.memory}, "limits": {"memory": self.memory}}
        if self.cpu is not None:
            resources["requests"]["cpu"] = self.cpu
            resources["limits"]["cpu"] = self.cpu
        return {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": f"uid-{self.name}",
                         "resourceVersion": "1", "creationTimestamp": "2023-11-14T22:13:20Z",
                         "labels": {"invoker": self.invoker, "name": self.name, "user-action-pod": "true", **self.extra_labels}},
            "spec": {"nodeName": self.node, "restartPolicy": "Always",
                     "containers": [{"name": "user-action", "image": "openwhisk/action-python-v3.11:latest",
                                     "resources": resources, "ports": [{"containerPort": 8080, "name": "action", "protocol": "TCP"}]}]},
            "status": {"phase": self.phase, "qosClass": "Guaranteed" if self.cpu else "Burstable"},
        }


class FakeKubernetesApi(FakeServer):
    """``list pods`` (with label selectors) and ``patch pods/resize``."""

    def __init__(self, resize_supported: bool = True) -> None:
        super().__init__()
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.resize_supported = resize_supported

    def add(self, name: str, namespace: str = "openwhisk", invoker: str = "invoker0", **fields: Any) -> FakePod:
        pod = FakePod(name=name, namespace=namespace, invoker=invoker, **fields)
        self.pods[(namespace, name)] = pod
        return pod

    @staticmethod
    def _selected(pod: FakePod, selector: str) -> bool:
        labels = pod.to_json()["metadata"]["labels"]
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        return True

    def route(self, call: Call) -> Reply:
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", call.path)
        if m and call.method == "GET":
            selector = call.query.get("labelSelector", "")
            items = [p.to_json() for (ns, _), p in sorted(self.pods.items()) if ns == m.group(1) and self._selected(p, selector)]
            return json_reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items})
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/resize", call.path)
        if m and call.method == "PATCH":
            if not self.resize_supported:
                return _status(404, "NotFound", "the server could not find the requested resource")
            pod = self.pods.get((m.group(1), unquote(m.group(2))))
            if pod is None:
                return _status(404, "NotFound", f'pods "{unquote(m.group(2))}" not found')
            if "strategic-merge-patch" not in call.headers.get("content-type", ""):
                return _status(415, "UnsupportedMediaType", f"unsupported patch type {call.headers.get('content-type')}")
            for container in (call.body or {}).get("spec", {}).get("containers", []):
                if container.get("name") != "user-action":
                    return _status(422, "Invalid", f"no container {container.get('name')!r} in pod {pod.name}")
                resources = container.get("resources", {})
                cpu = resources.get("requests", {}).get("cpu")
                if cpu is not None and resources.get("limits", {}).get("cpu", cpu) != cpu and pod.cpu is not None:
                    return _status(422, "Invalid", "Pod QOS Class may not change as a result of resizing")
                if cpu is not None:
                    if pod.cpu is None:
                        return _status(422, "Invalid", "resources.requests[cpu]: may not be added by a resize")
                    pod.cpu = cpu
            return json_reply(200, pod.to_json())
        return _status(404, "NotFound", "the server could not find the requested resource")
