"""The compact set of seen keys behaves as a set of strings."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from status_monitor.storage.seen import SeenSet, key_hash

ROOT = Path(__file__).resolve().parent.parent


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


GROWTH = """
import json, random, sys
from itertools import pairwise
from status_monitor.storage.seen import SeenSet

def resident_kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

rng = random.Random(6)
seen, added, worst = SeenSet(), [], 0
while len(seen._sorted) < 1_000_000:
    batch = [rng.getrandbits(64) - 2**63 for _ in range(300)] + added[-3:]  # a few seen already
    merged_before = len(seen._sorted)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = resident_kb("VmRSS")
    seen.add_hashes(batch)
    if len(seen._sorted) != merged_before and merged_before > 500_000:
        worst = max(worst, resident_kb("VmHWM") - before)
    added += batch[:300]
json.dump({
    "ascending": all(a < b for a, b in pairwise(seen._sorted)),
    "complete": len(seen) == len(set(added)) and all(seen.contains_hash(value) for value in added),
    "worst_kb": worst,
}, sys.stdout)
"""


def test_a_merge_moves_the_array_within_itself_never_copying_it():
    """Growing as a cold start grows it (300 hashes a first poll) to a million hashes (8 MB),
    no merge takes more resident memory than about its new hashes: not a second array, nor
    a list of every hash (~40 bytes each). The peak is Linux's VmHWM, reset (clear_refs)
    before each batch, in a fresh interpreter: what earlier tests freed changes where
    malloc puts a large block."""
    done = subprocess.run([sys.executable, "-c", GROWTH], capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(done.stdout)
    assert result["ascending"] and result["complete"]
    assert 0 < result["worst_kb"] < 2_000, f"a merge took {result['worst_kb']} KB more"
