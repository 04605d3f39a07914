"""Hypothesis on the edges' input guards (issue 11): nesting depth, lone surrogates, huge numbers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth import jsonguard
from berth.api.ecr import model
from berth.api.oci.app import _byte_range, _number, _page_size
from berth.registry.errors import PaginationNumberInvalid, RangeInvalid

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{}"\\', max_size=4),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids,
                                                                                     max_size=3), max_leaves=30)


def depth(v: object) -> int:
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    return 0


@given(json_values, st.integers(min_value=1, max_value=8))
def test_depth_check_agrees_with_the_document(value: object, limit: int) -> None:
    text = json.dumps(value)
    d = depth(value)
    if d <= limit:
        jsonguard.check_depth(text, limit)  # never refuses a document within the limit
    elif d > 2 * limit:
        with pytest.raises(jsonguard.TooDeep):
            jsonguard.check_depth(text, limit)


@given(st.integers(min_value=65, max_value=50_000), st.sampled_from(["[", '{"a":']))
def test_deep_text_is_refused_before_parsing(n: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    with pytest.raises(jsonguard.TooDeep):
        jsonguard.check_depth((opener * n + "1" + closer * n) * 2, 32)


@given(st.integers(min_value=0xD800, max_value=0xDFFF), st.text(max_size=5))
def test_lone_surrogate_is_a_serialization_error(code: int, other: str) -> None:
    body = ('{"repositoryName":' + json.dumps(other) + f',"x":"\\u{code:04x}"' + "}").encode()
    with pytest.raises(model.SerializationError):
        model.decode_body(body)


@given(st.text())
def test_decoded_text_round_trips(s: str) -> None:
    """Whatever a client can encode as UTF-8 decodes: the surrogate check refuses only lone surrogates."""
    assert model.decode_body(json.dumps({"a": s}).encode()) == {"a": s}


@given(st.integers(min_value=19, max_value=6000), st.integers(min_value=0, max_value=10_000))
def test_huge_numbers(digits: int, size: int) -> None:
    big = "1" + "0" * (digits - 1)
    assert _number(big) is None and _number("0" * digits + "7") == 7
    with pytest.raises(PaginationNumberInvalid):
        _page_size(big)
    with pytest.raises(RangeInvalid):
        _byte_range(f"bytes={big}-", size)
    if size:
        assert _byte_range(f"bytes=0-{big}", size) == (0, size)
        assert _byte_range(f"bytes=-{big}", size) == (0, size)
