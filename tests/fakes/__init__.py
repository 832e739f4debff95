"""Recorded-shape HTTP fakes of the services the backends talk to: OpenWhisk, the Docker Engine API
and the Kubernetes API. Each is a small standard-library HTTP server on 127.0.0.1 with an ephemeral
port, answering with the request and response shapes of the real service (Swagger spec of OpenWhisk,
Docker Engine API v1.43, Kubernetes core/v1), so the real clients (requests, the docker SDK, the
kubernetes client) are exercised end to end. They are fakes, not engines: no container runs.
"""
