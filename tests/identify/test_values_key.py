"""`_values_key` (identification's memo of rule results) tells values apart exactly as their types and
values do: two observations share a key only where every field read has an equal value of the same type."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from medsentry.identify.inventory import _values_key
from medsentry.observe import Observation

NAMES = ("a", "b", "c", "dport")
_SCALAR = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, 2, 443]), st.sampled_from([0.0, 1.0, 2.5]),
    st.sampled_from(["", "0", "1", "x", "True", "None"]),
)  # fmt: skip
_VALUE = st.one_of(_SCALAR, st.lists(_SCALAR, max_size=3))
_FIELDS = st.fixed_dictionaries({}, optional={n: _VALUE for n in NAMES[:3]})


def _typed(v: Any) -> Any:
    """A value with the type of it and of its items: equal only where type and value are."""
    return (list, tuple((type(x), x) for x in v)) if type(v) is list else (type(v), v)


def _observation(fields: dict[str, Any], dport: int | None) -> Observation:
    return Observation(1.0, "p", "p.kind", None, None, dport=dport, fields=fields)


@given(_FIELDS, _FIELDS, st.sampled_from([None, 80, 443]), st.sampled_from([None, 80, 443]))
def test_same_key_exactly_for_same_typed_values(
    f1: dict[str, Any], f2: dict[str, Any], p1: int | None, p2: int | None
) -> None:
    a, b = _observation(f1, p1), _observation(f2, p2)
    typed1 = [_typed(f1.get(n)) for n in NAMES[:3]] + [_typed(p1)]
    same = typed1 == [_typed(f2.get(n)) for n in NAMES[:3]] + [_typed(p2)]
    assert (_values_key("k", NAMES, a) == _values_key("k", NAMES, b)) == same


def test_text_none_and_numbers_of_one_value_are_told_apart() -> None:
    keys = {_values_key("k", ("a", "b"), _observation({"a": v, "b": w}, None)) for v, w in [
        ("1", None), (1, None), (1.0, None), (True, None), (None, "1"), (None, 1), ("1", 1), (1, "1"),
    ]}  # fmt: skip
    assert len(keys) == 8
