"""Benchmark function ``base64``: encode and decode a block of random bytes (CPU-bound, memory-light).

Parameters: ``size_bytes`` (default 1 MiB, at most 64 MiB), ``rounds`` (default 4: encode+decode
cycles), ``seed`` (default 0). The input is generated here from the seed: no network, no files.
"""

import base64
import hashlib
import random

MAX_SIZE_BYTES = 64 * 1024 * 1024


def main(args):
    size = int(args.get("size_bytes", 1024 * 1024))
    rounds = int(args.get("rounds", 4))
    if not (1 <= size <= MAX_SIZE_BYTES) or rounds < 1:
        return {"error": f"need 1 <= size_bytes <= {MAX_SIZE_BYTES} and rounds >= 1, got {size} and {rounds}"}
    data = random.Random(int(args.get("seed", 0))).randbytes(size)
    encoded = b""
    for _ in range(rounds):
        encoded = base64.b64encode(data)
        if base64.b64decode(encoded) != data:
            return {"error": "base64 round trip changed the data"}
    return {
        "size_bytes": size,
        "encoded_bytes": len(encoded),
        "rounds": rounds,
        "sha256": hashlib.sha256(encoded).hexdigest(),
    }
