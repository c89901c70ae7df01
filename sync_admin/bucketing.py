"""Pure-Python reference for Unleash-compatible percentage bucketing.

This mirrors the PostgreSQL functions ``billing_sync.murmur3_32`` and
``billing_sync.unleash_bucket`` (``sql/functions/murmur3_32_v1.sql`` and
``sql/functions/unleash_bucket_v1.sql``) and must stay bit-for-bit identical to them.

Unleash's ``gradualRollout`` strategy (stickiness = user id, groupId = flag name) computes::

    bucket = murmur3_x86_32(utf8("<flag name>:<customer id>"), seed=0) % 100 + 1

with the hash taken as an unsigned 32-bit integer, giving a bucket in 1..100.
"""

from __future__ import annotations

__all__ = ["murmur3_32", "unleash_bucket"]

_MASK32 = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593


def _rotl32(x: int, r: int) -> int:
    """Rotate the 32-bit value ``x`` left by ``r`` bits."""
    return ((x << r) | (x >> (32 - r))) & _MASK32


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """Return the MurmurHash3 x86_32 hash of ``data`` as an unsigned 32-bit int.

    Equivalent to ``mmh3.hash(data, seed, signed=False)``.

    Args:
        data: The bytes to hash.
        seed: The 32-bit seed (taken modulo 2**32).

    Returns:
        The hash, in ``0..4294967295``.
    """
    length = len(data)
    h = seed & _MASK32
    nblocks = length // 4

    for i in range(0, nblocks * 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _C1) & _MASK32
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK32
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & _MASK32

    tail = data[nblocks * 4 :]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * _C1) & _MASK32
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK32
        h ^= k

    h ^= length
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    h ^= h >> 16
    return h


def unleash_bucket(flag_name: str, customer_id: int) -> int:
    """Return the Unleash ``gradualRollout`` bucket (1..100) of a customer for a flag.

    The customer is in a rollout of ``p`` percent when ``unleash_bucket(flag, id) <= p``.

    Args:
        flag_name: The flag name (Unleash ``groupId``).
        customer_id: The customer id (Unleash stickiness value, the user id).

    Returns:
        ``murmur3_32(utf8(f"{flag_name}:{customer_id}"), 0) % 100 + 1``.
    """
    return murmur3_32(f"{flag_name}:{customer_id}".encode(), 0) % 100 + 1
