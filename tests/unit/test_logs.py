"""Log lines: JSON for machines, text for people; both keep a failure's traceback."""

from __future__ import annotations

import json
import logging
import sys

from runtime.logs import JsonFormatter, TextFormatter


def _fail() -> None:
    raise ValueError("the cause")


def _failure_record() -> logging.LogRecord:
    try:
        _fail()
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, "f", 1, "it failed", None, sys.exc_info())
    record.request_id = "abc"
    return record


def test_the_text_lines_people_read_keep_the_traceback_and_the_fields() -> None:
    text = TextFormatter().format(_failure_record())
    first, *rest = text.splitlines()
    assert first.endswith("error it failed (request_id=abc)")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: the cause"


def test_the_json_lines_keep_the_traceback_and_the_fields() -> None:
    entry = json.loads(JsonFormatter().format(_failure_record()))
    assert entry["request_id"] == "abc"
    assert entry["exception"].endswith("ValueError: the cause")
