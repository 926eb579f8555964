"""Number formats: every value written must parse back, under the runtime's rules, to itself."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_export.errors import UserError
from mpc_export.export.tokens import check_format, format_values
from runtime_rules import runtime_parse


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=40))
def test_decimal_tokens_parse_back_exactly(values):
    text = format_values(np.array(values, dtype=np.int64), "decimal", 12, "t")
    assert text.count("\n") == 1 and text.endswith("\n")
    assert runtime_parse(text, 12) == values


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=40), st.integers(1, 24))
def test_integer_tokens_parse_back_for_any_frac_bits(values, frac_bits):
    text = format_values(np.array(values, dtype=np.int64), "integer", frac_bits, "t")
    assert runtime_parse(text, 12) == values


@given(st.integers(0, 2**30), st.integers(1, 20))
def test_decimal_with_other_reading_precision_reads_exactly_when_equal(v, f):
    text = format_values(np.array([v]), "decimal", f, "t")
    assert runtime_parse(text, f) == [v]


def test_decimal_needs_f_equal_r():
    with pytest.raises(UserError, match="reading-precision"):
        check_format("decimal", 16, 12)
    check_format("integer", 16, 12)


def test_integer_refuses_values_beyond_stoi():
    with pytest.raises(UserError, match="32-bit"):
        format_values(np.array([2**31]), "integer", 12, "big")


def test_token_shape():
    text = format_values(np.array([0, 1, -1, 4096, -4096, 2048, -6144]), "decimal", 12, "t")
    assert text.split() == ["0.0", "0.000244140625", "-0.000244140625", "1.0", "-1.0", "0.5", "-1.5"]
