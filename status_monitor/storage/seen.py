"""The set of update keys already seen, kept small: 8 bytes a key instead of ~150.

A key is stored as a 64-bit hash (blake2b). Two keys colliding would hide one update; with
a million keys the chance is about one in thirty million.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from typing import Iterable


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True)


class SeenSet:
    """A sorted array of hashes, plus a small set of recent ones merged into it in bulk."""

    def __init__(self, hashes: Iterable[int] = ()) -> None:
        self._sorted = array("q", sorted(set(hashes)))
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + sum(1 for value in self._recent if not self._in_sorted(value))

    def __contains__(self, key: str) -> bool:
        return self.contains_hash(key_hash(key))

    def contains_hash(self, value: int) -> bool:
        return value in self._recent or self._in_sorted(value)

    def add(self, key: str) -> None:
        self.add_hash(key_hash(key))

    def add_hash(self, value: int) -> None:
        self.add_hashes((value,))

    def add_hashes(self, values: Iterable[int]) -> None:
        self._recent.update(values)
        if len(self._recent) > max(4096, len(self._sorted) // 8):
            self._merge()

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)

    def _merge(self) -> None:
        fresh = [value for value in self._recent if not self._in_sorted(value)]
        self._sorted = array("q", sorted(self._sorted + array("q", fresh)))
        self._recent.clear()

    def _in_sorted(self, value: int) -> bool:
        index = bisect_left(self._sorted, value)
        return index < len(self._sorted) and self._sorted[index] == value
