"""The compact set of seen keys behaves as a set of strings."""

import random
import tracemalloc

import pytest

from status_monitor.storage.seen import SeenSet, key_hash


def test_membership_across_merges():
    seen = SeenSet()
    keys = [f"statuspage:code{i}:{i % 7}:update:07-09 04:{i % 60:02d}" for i in range(20_000)]
    for key in keys[:15_000]:
        seen.add(key)
    seen.update(keys[:100])  # adding again changes nothing
    assert len(seen) == 15_000
    assert all(key in seen for key in keys[:15_000])
    assert not any(key in seen for key in keys[15_000:])


def test_built_from_stored_hashes():
    seen = SeenSet(key_hash(k) for k in ("a", "b", "a"))
    assert len(seen) == 2 and "a" in seen and "b" in seen and "c" not in seen


def test_merges_keep_every_hash_once_in_order():
    """Against a plain set, over many merges of random batches with repeats old and new."""
    rng = random.Random(5)
    reference: set[int] = set()
    seen = SeenSet()
    for _ in range(300):
        batch = [rng.getrandbits(64) - 2**63 for _ in range(rng.randrange(1, 3000))]
        batch += rng.sample(sorted(reference), min(5, len(reference))) + batch[:3]
        seen.add_hashes(batch)
        reference.update(batch)
        assert all(seen.contains_hash(value) for value in batch)
    assert len(seen) == len(reference)
    assert not any(seen.contains_hash(rng.getrandbits(64) - 2**63) for _ in range(1000))


def test_built_from_ascending_hashes_and_refuses_others():
    seen = SeenSet.from_ascending([-5, 3, 9])
    assert len(seen) == 3 and seen.contains_hash(3) and not seen.contains_hash(4)
    for wrong in ([3, -5], [3, 3]):
        with pytest.raises(ValueError):
            SeenSet.from_ascending(wrong)


def test_merging_a_million_hashes_never_holds_them_as_python_objects():
    """The merge copies array slices: its peak is the two arrays (8 bytes a hash each) and the
    recent set, not a list of every hash (~40 bytes each)."""
    rng = random.Random(6)
    seen = SeenSet.from_ascending(sorted(rng.sample(range(-2**62, 2**62, 7), 1_000_000)))
    seen.add_hashes(rng.getrandbits(64) - 2**63 for _ in range(4000))
    tracemalloc.start()
    seen.add_hashes(rng.getrandbits(64) - 2**63 for _ in range(40_000))  # over the threshold: one merge
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(seen) == 1_044_000
    assert peak < 8 * 1_044_000 + 6_000_000  # the new array, and the recent set (~4 MB)
