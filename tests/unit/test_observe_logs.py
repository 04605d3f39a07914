"""Berth's own log lines and the access log's masking (berth/observe)."""

from __future__ import annotations

import json
import logging

from berth.observe.access import _masked_query, _q
from berth.observe.logs import JsonFormatter


def test_json_formatter_one_object_a_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("berth.oci", logging.ERROR, __file__, 1, "failed %s", ("x\ny",), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "error" and doc["logger"] == "berth.oci" and doc["message"] == "failed x\ny"
    assert "ValueError: boom" in doc["exc"] and doc["time"].endswith("Z")


def test_credentials_in_queries_are_masked() -> None:
    q = "X-Berth-Expires=1&X-Berth-Signature=abc123&n=5&X-Amz-Credential=AKIA/x&X-Amz-Security-Token=tok"
    masked = _masked_query(q)
    assert "abc123" not in masked and "AKIA" not in masked and "tok" not in masked
    assert "n=5" in masked and "X-Berth-Expires=1" in masked
    assert _masked_query("n=5&last=a") == "n=5&last=a"


def test_log_strings_are_json() -> None:
    for s in ("plain", 'quo"te', "back\\slash", "ctl\x01", "é", "\ud800"):
        assert json.loads(f"[{_q(s)}]") == [s]
