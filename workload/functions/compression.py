"""Benchmark function ``compression``: zip a generated directory of text files in memory
(CPU-bound deflate over text-like data).

Parameters: ``files`` (default 8), ``file_bytes`` (default 256 KiB each), ``level`` (deflate level,
default 6), ``seed`` (default 0).
"""

import io
import random
import zipfile

_WORDS = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by", "this", "are", "from", "at", "or", "an", "have", "not", "which", "but", "serverless", "container", "latency", "throughput", "memory", "share", "cluster", "invoker", "activation", "policy"]


def _text(size, rng):
    # Words average about 5 characters with their space: draw enough for ``size`` bytes in one call.
    words = rng.choices(_WORDS, k=size // 4 + 16)
    for i in range(0, len(words), 12):
        words[i] = f"{words[i]}\n{rng.randrange(10**6)}"
    return " ".join(words).encode()[:size]


def main(args):
    files = int(args.get("files", 8))
    file_bytes = int(args.get("file_bytes", 256 * 1024))
    level = int(args.get("level", 6))
    if not (1 <= files <= 1000 and 1 <= file_bytes <= 64 * 1024 * 1024 and 0 <= level <= 9):
        return {"error": f"need files in [1, 1000], file_bytes in [1, 64 MiB], level in [0, 9]; got {files}, {file_bytes}, {level}"}
    rng = random.Random(int(args.get("seed", 0)))
    buffer = io.BytesIO()
    raw = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for i in range(files):
            data = _text(file_bytes, rng)
            raw += len(data)
            archive.writestr(f"dir/file-{i:04d}.txt", data)
    compressed = buffer.tell()
    return {"files": files, "raw_bytes": raw, "zip_bytes": compressed, "ratio": raw / compressed}
