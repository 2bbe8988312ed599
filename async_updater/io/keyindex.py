"""A compact map from (account_id, user_id) to an int, for a million users in a few MB.

Keys are stored as 64-bit BLAKE2b digests in an open-addressing table of ``array('Q')``, so the
duplicate check and the resume skip-set cost 16 bytes per slot instead of a Python tuple, two
strings and a dict entry (~250 bytes). Two different users share a digest with probability about
n^2 / 2^65 (3e-8 for a million users); if it ever happened, the later one would be taken for a
duplicate of the earlier one (reported ``invalid``, or skipped on resume), never sent twice.
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

__all__ = ["KeyIndex", "key_digest"]

_EMPTY = 0


def key_digest(account_id: str, user_id: str) -> int:
    """The 64-bit digest of a user key; never 0 (0 marks an empty slot)."""
    # The length prefix keeps ("a", "bc") and ("ab", "c") apart whatever the ids contain.
    data = f"{len(account_id)}:{account_id}\x00{user_id}".encode("utf-8", "surrogatepass")
    value = int.from_bytes(blake2b(data, digest_size=8).digest(), "little")
    return value or 1


class KeyIndex:
    """Set of user keys with an int value each (e.g. the line a user was first seen on)."""

    __slots__ = ("_keys", "_len", "_mask", "_values")

    def __init__(self, capacity: int = 1024) -> None:
        size = 8
        while size < capacity * 3 // 2:
            size *= 2
        self._alloc(size)
        self._len = 0

    def _alloc(self, size: int) -> None:
        self._keys = array("Q", bytes(8 * size))
        self._values = array("q", bytes(8 * size))
        self._mask = size - 1

    def __len__(self) -> int:
        return self._len

    @property
    def nbytes(self) -> int:
        """Memory held by the table itself."""
        return (len(self._keys) + len(self._values)) * 8

    def _slot(self, digest: int) -> int:
        keys, mask = self._keys, self._mask
        i = digest & mask
        while True:
            k = keys[i]
            if k in (digest, _EMPTY):
                return i
            i = (i + 1) & mask

    def add(self, account_id: str, user_id: str, value: int) -> int | None:
        """Store ``value`` for a new key and return None; for a known key return its value."""
        digest = key_digest(account_id, user_id)
        i = self._slot(digest)
        if self._keys[i] == digest:
            return self._values[i]
        self._keys[i] = digest
        self._values[i] = value
        self._len += 1
        if self._len * 3 > len(self._keys) * 2:
            self._grow()
        return None

    def set(self, account_id: str, user_id: str, value: int) -> None:
        """Store ``value`` for the key, replacing any value it had."""
        digest = key_digest(account_id, user_id)
        i = self._slot(digest)
        if self._keys[i] == digest:
            self._values[i] = value
            return
        self._keys[i] = digest
        self._values[i] = value
        self._len += 1
        if self._len * 3 > len(self._keys) * 2:
            self._grow()

    def get(self, account_id: str, user_id: str) -> int | None:
        digest = key_digest(account_id, user_id)
        i = self._slot(digest)
        return self._values[i] if self._keys[i] == digest else None

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        return self.get(key[0], key[1]) is not None

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        self._alloc(len(old_keys) * 2)
        keys, values = self._keys, self._values
        for k, v in zip(old_keys, old_values, strict=True):
            if k != _EMPTY:
                i = self._slot(k)
                keys[i] = k
                values[i] = v
