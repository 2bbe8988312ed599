"""Work parked on disk, per scope, first in first out.

With one limit per account, a scope whose queue holds its share of the rows in memory must not
stop the reader: the rows after it may belong to accounts that could send now (an export sorted
by account puts thousands of one account's rows first). Its further rows are parked here, in
one unnamed temporary file, and come back as its queue drains. Memory costs 8 bytes per parked
row (its offset); the file goes away when closed (or when the process dies).
"""

from __future__ import annotations

import os
import struct
import tempfile
from array import array
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Overflow"]

T = TypeVar("T")
S = TypeVar("S")

_LEN = struct.Struct("<I")


class _Parked:
    __slots__ = ("offsets", "start")

    def __init__(self) -> None:
        self.offsets = array("q")
        self.start = 0

    def __len__(self) -> int:
        return len(self.offsets) - self.start


class Overflow(Generic[T, S]):
    """``park(key, work)`` writes ``dump(work)`` to disk; ``unpark(key, n, scope)`` reads up to
    ``n`` of that key's works back, oldest first, through ``load(blob, scope)``."""

    def __init__(
        self,
        dump: Callable[[T], bytes],
        load: Callable[[bytes, S], T],
        *,
        directory: str | None = None,
    ) -> None:
        self._dump = dump
        self._load = load
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close())
        self._fd = self._file.fileno()
        self._end = 0
        self._keys: dict[str, _Parked] = {}
        self.parked = 0  # works on disk now

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def count(self, key: str) -> int:
        parked = self._keys.get(key)
        return 0 if parked is None else len(parked)

    def park(self, key: str, work: T) -> None:
        blob = self._dump(work)
        data = _LEN.pack(len(blob)) + blob
        os.pwrite(self._fd, data, self._end)
        parked = self._keys.get(key)
        if parked is None:
            parked = self._keys[key] = _Parked()
        parked.offsets.append(self._end)
        self._end += len(data)
        self.parked += 1

    def unpark(self, key: str, n: int, scope: S) -> list[T]:
        parked = self._keys.get(key)
        if parked is None or n <= 0:
            return []
        out: list[T] = []
        offsets = parked.offsets
        while len(out) < n and parked.start < len(offsets):
            offset = offsets[parked.start]
            parked.start += 1
            (size,) = _LEN.unpack(os.pread(self._fd, _LEN.size, offset))
            out.append(self._load(os.pread(self._fd, size, offset + _LEN.size), scope))
        self.parked -= len(out)
        if parked.start >= len(offsets):
            del self._keys[key]
        elif parked.start > 4096 and parked.start * 2 > len(offsets):
            del offsets[: parked.start]  # the read part is of no further use
            parked.start = 0
        return out

    def close(self) -> None:
        self._file.close()
        self._keys.clear()
        self.parked = 0
