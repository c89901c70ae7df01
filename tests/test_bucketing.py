"""Tests of the pure-Python Unleash bucketing reference (sync_admin.bucketing).

The expected hashes below were computed once with the ``mmh3`` package
(``mmh3.hash(data, seed, signed=False)``) and are kept as literals so these tests
need no third-party dependency.
"""

from __future__ import annotations

import pytest

from sync_admin.bucketing import murmur3_32, unleash_bucket

# (flag name, customer id, expected bucket): Unleash gradualRollout vectors.
UNLEASH_VECTORS = [
    ("gr1", 123, 73),
    ("groupX", 999, 25),
    ("account_data_persistence", 1, 36),
    ("account_data_persistence", 1000, 91),
]

# (data, seed, expected unsigned murmur3_x86_32) computed with mmh3.
MURMUR_VECTORS = [
    (b"", 0, 0),
    (b"a", 0, 1009084850),  # 1 byte: tail only
    (b"ab", 0, 2613040991),  # 2 bytes: tail only
    (b"abc", 0, 3017643002),  # 3 bytes: tail only
    (b"abcd", 0, 1139631978),  # 4 bytes: one block, no tail
    (b"abcde", 0, 3902511862),  # 5 bytes: one block + 1-byte tail
    (b"\xff", 0, 4251775245),  # high-bit tail byte (must be treated as unsigned)
    (b"\xff\xfe", 0, 2529716304),
    (b"\xff\xff\xff\xff", 0, 1982413648),  # high-bit block
    (b"\x80\x00\x00\x00\x01", 0, 1180903686),
    ("é".encode(), 0, 269551495),  # 2-byte UTF-8
    ("€".encode(), 0, 1531182245),  # 3-byte UTF-8
    ("日本".encode(), 0, 3302619458),  # 6 bytes
    ("ü:1".encode(), 0, 3942707861),  # 4 bytes, non-ASCII
    ("flag_ñ:42".encode(), 0, 3235540744),
    ("日本語:7".encode(), 0, 2969279190),
    ("🚀:123456789".encode(), 0, 2194926041),  # 4-byte UTF-8 code point
    (b"hello world", 0, 1586663183),
    (b"abc", 1, 2859854335),
    (b"hello", 42, 3806057185),
    ("日本".encode(), 4294967295, 2939939357),
]

# (flag name, customer id, expected bucket) computed with mmh3.
EXTRA_BUCKET_VECTORS = [
    ("flag_ñ", 42, 45),
    ("日本語", 7, 91),
    ("account_data_persistence", 0, 76),
    ("account_data_persistence", 9223372036854775807, 57),
    ("account_data_persistence", -5, 37),
]


@pytest.mark.parametrize(("flag_name", "customer_id", "expected"), UNLEASH_VECTORS)
def test_unleash_vectors(flag_name: str, customer_id: int, expected: int) -> None:
    assert unleash_bucket(flag_name, customer_id) == expected


@pytest.mark.parametrize(("flag_name", "customer_id", "expected"), EXTRA_BUCKET_VECTORS)
def test_extra_bucket_vectors(flag_name: str, customer_id: int, expected: int) -> None:
    assert unleash_bucket(flag_name, customer_id) == expected


@pytest.mark.parametrize(("data", "seed", "expected"), MURMUR_VECTORS)
def test_murmur3_vectors(data: bytes, seed: int, expected: int) -> None:
    assert murmur3_32(data, seed) == expected


def test_murmur3_default_seed_is_zero() -> None:
    assert murmur3_32(b"gr1:123") == murmur3_32(b"gr1:123", 0)


def test_murmur3_is_unsigned_32_bit() -> None:
    for i in range(2000):
        h = murmur3_32(f"account_data_persistence:{i}".encode())
        assert 0 <= h <= 0xFFFFFFFF


def test_bucket_range_and_distribution() -> None:
    counts = [0] * 101
    for customer_id in range(1, 10001):
        bucket = unleash_bucket("account_data_persistence", customer_id)
        assert 1 <= bucket <= 100
        counts[bucket] += 1
    assert counts[0] == 0
    # Roughly uniform: each bucket expects 100 hits out of 10,000.
    assert all(50 <= c <= 150 for c in counts[1:])
    assert 4500 <= sum(counts[1:51]) <= 5500


def test_bucket_matches_manual_definition() -> None:
    for customer_id in (1, 42, 1000, 123456789):
        data = f"account_data_persistence:{customer_id}".encode()
        assert unleash_bucket("account_data_persistence", customer_id) == murmur3_32(data, 0) % 100 + 1
