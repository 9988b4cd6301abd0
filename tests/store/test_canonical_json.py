"""`canonical_json` keeps the text the evidence table's uniqueness was built on."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from medsentry.store.merge import canonical_json

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def _as_before(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@given(_VALUES)
def test_same_text_as_json_dumps(value: Any) -> None:
    assert canonical_json(value) == _as_before(value)


def test_strings_escaped_as_json_dumps_does_and_odd_values_as_text() -> None:
    for value in ("Philips", 'a"b\\c', "é ü 日本", "\x00\n", "\ud800"):
        assert canonical_json(value) == _as_before(value)
    assert canonical_json({"b": 1, "a": {1, 2} and b"x"}) == '{"a":"b\'x\'","b":1}'
    assert canonical_json(("x", 1)) == '["x",1]'
