"""A bounded window of recently accepted message ids, to drop device retransmissions."""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """Remembers the last `capacity` ids; `seen` is O(1)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, key: str) -> bool:
        return key in self._ids

    def add(self, key: str) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def discard(self, key: str) -> None:
        """Forget `key` (its produce failed, so a redelivery must not count as a duplicate)."""
        self._ids.pop(key, None)
