"""Bounded state: every table detection keeps is a least-recently-used map with a size cap, and what it
drops is counted, so a crafted flood costs evictions, never memory."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, ItemsView, ValuesView
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A map with a size cap that forgets its least recently used key. A dict keeps its keys in insertion
    order: a key used again is taken out and put back at the end, the first key is the oldest. (Not an
    OrderedDict subclass, as before: mypyc compiles such a subclass into a class the garbage collector
    crashes on, and left uncompiled its methods were a sixth of detection's cost.)"""

    def __init__(self, cap: int, name: str, evictions: Counter[str]) -> None:
        self.cap = max(1, int(cap))
        self.name = name
        self.evictions = evictions
        self._d: dict[K, V] = {}

    def touch(self, key: K, factory: Callable[[], V]) -> V:
        """The value for key (made by factory if absent), now the most recently used."""
        d = self._d
        if key in d:
            value = d.pop(key)
            d[key] = value
            return value
        value = factory()
        d[key] = value
        self._bound()
        return value

    def put(self, key: K, value: V) -> None:
        d = self._d
        if key in d:
            del d[key]
        d[key] = value
        self._bound()

    def move_to_end(self, key: K) -> None:
        """Key is now the most recently used (KeyError if absent)."""
        d = self._d
        d[key] = d.pop(key)

    def _bound(self) -> None:
        d = self._d
        if len(d) > self.cap:
            del d[next(iter(d))]
            self.evictions[self.name] += 1

    def get(self, key: K) -> V | None:
        return self._d.get(key)

    def __getitem__(self, key: K) -> V:
        return self._d[key]

    def __delitem__(self, key: K) -> None:
        del self._d[key]

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def values(self) -> ValuesView[V]:
        return self._d.values()

    def items(self) -> ItemsView[K, V]:
        return self._d.items()


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
