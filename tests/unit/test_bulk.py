"""COPY BINARY rows built with numpy: the layout PostgreSQL reads, checked byte for byte."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from storage.bulk import encode_rows, postgres_microseconds

TS = np.array([946_684_800, 946_684_860], dtype=np.int64)  # 2000-01-01, then a minute later


def test_a_row_is_field_count_then_length_prefixed_fields() -> None:
    values = np.array([[[1.5, -2.0], [3.25, 4.0]]])
    body = encode_rows(["sl-1"], TS, values)
    row = 2 + 4 + 8 + 4 + 4 + 2 * (4 + 8)
    assert len(body) == 2 * row
    fields, ts_size, ts, id_size = struct.unpack(">hiqi", body[:18])
    assert (fields, ts_size, ts, id_size) == (4, 8, 0, 4)
    assert body[18:22] == b"sl-1"
    assert struct.unpack(">idid", body[22:row]) == (8, 1.5, 8, -2.0)
    assert postgres_microseconds(TS)[1] == 60_000_000


def test_nan_is_null_and_absent_rows_are_left_out() -> None:
    values = np.array([[[1.0, np.nan], [2.0, 3.0]]])
    body = encode_rows(["s"], TS, values, present=np.array([[True, False]]))
    assert body.endswith(b"\xff\xff\xff\xff"), "NULL: length -1, no data"
    assert body.count(b"s") == 1


def test_shapes_that_do_not_match_are_refused() -> None:
    with pytest.raises(ValueError, match="must match the shape"):
        encode_rows(["a", "b"], TS, np.zeros((1, 2, 3)))
