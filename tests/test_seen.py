"""The compact set of seen keys behaves as a set of strings."""

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
