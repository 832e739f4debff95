"""Benchmark function ``primes``: count the primes below ``limit`` with a sieve of Eratosthenes
(CPU- and memory-bound).

Parameters: ``limit`` (default and maximum 10^7, the paper's "primes < 10^7"; a sieve in a bytearray
with slice assignment keeps one run near 0.1 s on a small machine).
"""

MAX_LIMIT = 10_000_000


def main(args):
    limit = int(args.get("limit", MAX_LIMIT))
    if not (2 <= limit <= MAX_LIMIT):
        return {"error": f"limit must be in [2, {MAX_LIMIT}], got {limit}"}
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    p = 2
    while p * p < limit:
        if sieve[p]:
            # Strike out p*p, p*p+p, ... in one slice assignment (the smaller multiples are done).
            sieve[p * p :: p] = bytes(len(range(p * p, limit, p)))
        p += 1
    count = sieve.count(1)
    largest = sieve.rindex(1) if count else None
    return {"limit": limit, "count": count, "largest": largest}
