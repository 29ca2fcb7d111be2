"""The set of update keys already seen, kept small: 8 bytes a key instead of ~150.

A key is stored as a 64-bit hash (blake2b). Two keys colliding would hide one update; with
a million keys the chance is about one in thirty million.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from itertools import pairwise
from typing import Iterable


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True)


class SeenSet:
    """A sorted array of hashes, plus a small set of recent ones merged into it in bulk.

    Memory is 8 bytes a hash, and a merge needs none more than the new hashes' own: it
    moves slices of the array within it, never a copy of it or a list or set of all."""

    def __init__(self, hashes: Iterable[int] = ()) -> None:
        """`hashes`: 64-bit hashes (key_hash) in any order, repeats allowed."""
        self._sorted = array("q", sorted(set(hashes)))
        self._recent: set[int] = set()

    @classmethod
    def from_ascending(cls, hashes: Iterable[int]) -> SeenSet:
        """From distinct hashes in ascending order, as a store reads its primary key in order:
        straight into the array. Raises ValueError if they are not strictly ascending."""
        seen = cls()
        seen._sorted = array("q", hashes)
        if any(a >= b for a, b in pairwise(seen._sorted)):
            raise ValueError("hashes not in strictly ascending order")
        return seen

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
        if len(self._recent) > max(4096, len(self._sorted) // 32):
            self._merge()

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)

    def _merge(self) -> None:
        """Merges the recent hashes into the array in place: the array grows by the number of
        new ones, and from the back each run of old hashes moves up by the number of new ones
        still below it (memoryview copies overlapping slices as memmove does). Growing a
        large array is a realloc, which glibc does by remapping: no second copy of it."""
        old, start = self._sorted, 0
        indices, values = array("q"), array("q")  # where each new hash goes in the old array
        for value in sorted(self._recent):
            index = bisect_left(old, value, start)
            if index == len(old) or old[index] != value:  # not merged already
                indices.append(index)
                values.append(value)
            start = index
        end = len(old)  # the old hashes not moved yet are [0, end)
        old.frombytes(bytes(8 * len(values)))
        with memoryview(old) as view:
            for below, index, value in zip(range(len(values), 0, -1), reversed(indices), reversed(values)):
                view[index + below:end + below] = view[index:end]
                view[index + below - 1] = value
                end = index
        self._recent.clear()

    def _in_sorted(self, value: int) -> bool:
        index = bisect_left(self._sorted, value)
        return index < len(self._sorted) and self._sorted[index] == value
