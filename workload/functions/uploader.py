"""Benchmark function ``uploader``: "upload" a generated file to a bucket that is a local directory
(I/O-bound: write, fsync, checksum), standing in for a cloud-storage upload.

Parameters: ``size_bytes`` (default 1 MiB), ``dest_dir`` (default ``<tmp>/mfrm-uploads``, or
``$UPLOADER_DEST_DIR``), ``max_objects`` (default 64: the bucket keeps the newest this many uploads,
so repeated benchmark runs do not fill the disk), ``seed`` (default 0).
"""

import hashlib
import os
import random
import tempfile
import time
import uuid

MAX_SIZE_BYTES = 256 * 1024 * 1024


def main(args):
    size = int(args.get("size_bytes", 1024 * 1024))
    if not (1 <= size <= MAX_SIZE_BYTES):
        return {"error": f"size_bytes must be in [1, {MAX_SIZE_BYTES}], got {size}"}
    dest = args.get("dest_dir") or os.environ.get("UPLOADER_DEST_DIR") or os.path.join(tempfile.gettempdir(), "mfrm-uploads")
    max_objects = int(args.get("max_objects", 64))
    os.makedirs(dest, exist_ok=True)
    data = random.Random(int(args.get("seed", 0))).randbytes(size)
    key = f"{int(time.time() * 1000)}-{os.environ.get('__OW_ACTIVATION_ID') or uuid.uuid4().hex}.bin"
    path = os.path.join(dest, key)
    digest = hashlib.sha256()
    with open(path + ".part", "wb") as handle:
        for start in range(0, size, 1 << 20):
            chunk = data[start : start + (1 << 20)]
            handle.write(chunk)
            digest.update(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(path + ".part", path)
    objects = sorted(name for name in os.listdir(dest) if name.endswith(".bin"))
    for old in objects[: max(len(objects) - max_objects, 0)]:
        try:
            os.remove(os.path.join(dest, old))
        except FileNotFoundError:
            pass
    return {"key": key, "bucket": dest, "size_bytes": size, "sha256": digest.hexdigest()}
