"""The compact user-key index behind the duplicate check and the resume skip-set."""

from __future__ import annotations

import pytest

from async_updater.io.keyindex import KeyIndex, key_digest


def test_new_key_returns_none_and_a_known_key_returns_its_first_value() -> None:
    index = KeyIndex()
    assert index.add("acct", "user", 7) is None
    assert index.add("acct", "user", 99) == 7
    assert index.get("acct", "user") == 7
    assert len(index) == 1


def test_lookup_of_an_absent_key_is_none_and_not_contained() -> None:
    index = KeyIndex()
    index.add("acct", "user", 1)
    assert index.get("acct", "other") is None
    assert ("acct", "other") not in index
    assert ("acct", "user") in index


@pytest.mark.parametrize("key", ["acct", ("acct",), ("a", "b", "c"), None, 3])
def test_contains_is_false_for_anything_but_a_pair(key: object) -> None:
    index = KeyIndex()
    index.add("acct", "user", 1)
    assert key not in index


def test_account_and_user_boundaries_keep_keys_apart() -> None:
    index = KeyIndex()
    pairs = [("a", "bc"), ("ab", "c"), ("a\x00b", "c"), ("a", "b\x00c"), ("", "abc"), ("abc", "")]
    for n, (a, u) in enumerate(pairs):
        assert index.add(a, u, n) is None, (a, u)
    assert [index.get(a, u) for a, u in pairs] == list(range(len(pairs)))
    assert len({key_digest(a, u) for a, u in pairs}) == len(pairs)


def test_ids_that_are_not_valid_utf8_can_be_keys() -> None:
    index = KeyIndex()
    undecodable = b"u\xff".decode("utf-8", "surrogateescape")
    assert index.add("acct", undecodable, 3) is None
    assert index.get("acct", undecodable) == 3
    assert index.get("acct", "u?") is None


def test_digest_is_never_zero_the_empty_slot_marker() -> None:
    assert all(key_digest("a", str(i)) != 0 for i in range(1000))


def test_grows_past_its_initial_capacity_keeping_every_key_and_value() -> None:
    index = KeyIndex(capacity=4)
    before = index.nbytes
    for i in range(5000):
        assert index.add(f"acct{i % 7}", f"user{i}", i * 3) is None
    assert len(index) == 5000
    assert index.nbytes > before
    assert all(index.get(f"acct{i % 7}", f"user{i}") == i * 3 for i in range(5000))


def test_no_false_negatives_or_lost_values_over_100k_keys() -> None:
    index = KeyIndex()
    n = 100_000
    for i in range(n):
        index.add(f"account-{i % 97}", f"user-{i}", i)
    assert len(index) == n
    missing = [i for i in range(n) if index.get(f"account-{i % 97}", f"user-{i}") != i]
    assert missing == []
    # Keys never added: a 64-bit digest makes a false positive over 100k lookups ~1e-9.
    assert sum(("account-0", f"stranger-{i}") in index for i in range(n)) == 0
    # 16 bytes a slot, load under 2/3: a few MB, not the ~25 MB a set of tuples would take.
    assert index.nbytes <= 16 * 4 * n


def test_values_keep_their_sign_and_full_64_bit_range() -> None:
    index = KeyIndex()
    values = [0, -1, 2**63 - 1, -(2**63), 123456789012]
    for n, v in enumerate(values):
        index.add("a", f"u{n}", v)
    assert [index.get("a", f"u{n}") for n in range(len(values))] == values


def test_set_replaces_a_value_and_adds_a_new_key() -> None:
    index = KeyIndex(capacity=2)
    index.set("a", "u", 1)
    index.set("a", "u", 5)
    assert (index.get("a", "u"), len(index)) == (5, 1)
    for i in range(100):
        index.set("b", f"u{i}", i)
        index.set("b", f"u{i}", -i)
    assert len(index) == 101
    assert [index.get("b", f"u{i}") for i in range(100)] == [-i for i in range(100)]
