"""localwhisk: a small OpenWhisk-compatible serverless platform on one machine.

It runs Python actions (``main(args) -> dict``) in warm worker processes, one Linux cgroup per
container with real CPU shares, or (``--containers docker``) in Docker containers made as OpenWhisk's
invoker makes them; speaks the subset of OpenWhisk's REST API that OpenWhisk's own clients and mfrm's
daemon and replayer use, and serves OpenWhisk's user-events metrics. See ``docs/localwhisk.md``.

This module imports nothing on purpose: every worker process imports ``localwhisk.worker`` and must
not pay for the server, the metrics library or the scheduler. Import what you need from the
submodules: :class:`localwhisk.server.LocalWhisk` to embed the platform, ``python -m localwhisk`` to
run it.
"""

__version__ = "0.1.0"
