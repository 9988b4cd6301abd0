"""Bounded state: every table detection keeps is a least-recently-used map with a size cap, and what it
drops is counted, so a crafted flood costs evictions, never memory."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(OrderedDict[K, V], Generic[K, V]):
    def __init__(self, cap: int, name: str, evictions: Counter[str]) -> None:
        super().__init__()
        self.cap = max(1, int(cap))
        self.name = name
        self.dropped: list[object] = []  # what the last add() pushed out (aged or over the cap)
        self.evictions = evictions

    def touch(self, key: K, factory: Callable[[], V]) -> V:
        """The value for key (made by factory if absent), now the most recently used."""
        try:
            self.move_to_end(key)
            return self[key]
        except KeyError:
            value = factory()
            self[key] = value
            if len(self) > self.cap:
                self.popitem(last=False)
                self.evictions[self.name] += 1
            return value

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.cap:
            self.popitem(last=False)
            self.evictions[self.name] += 1


class Window:
    """Distinct items seen in the last `span` seconds (items keep their latest time); bounded."""

    __slots__ = ("cap", "dropped", "evictions", "items", "name", "span")

    def __init__(self, span: float, cap: int, evictions: Counter[str], name: str) -> None:
        self.span = span
        self.cap = cap
        self.items: OrderedDict[object, float] = OrderedDict()
        self.evictions = evictions
        self.name = name
        self.dropped: list[object] = []  # what the last add() pushed out (aged or over the cap)

    def add(self, item: object, ts: float) -> bool:
        """Record item at ts; True when it was not in the window yet."""
        items = self.items
        new = item not in items
        items[item] = max(ts, items.get(item, ts))
        items.move_to_end(item)
        horizon = ts - self.span
        self.dropped = []
        while items:
            first, t = next(iter(items.items()))
            if t >= horizon and len(items) <= self.cap:
                break
            items.popitem(last=False)
            self.dropped.append(first)
            if t >= horizon:
                self.evictions[self.name] += 1
        return new

    def __len__(self) -> int:
        return len(self.items)
