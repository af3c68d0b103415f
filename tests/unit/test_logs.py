"""What reaches stderr: one JSON object per line, from structlog and from the stdlib alike, no raw national ID.

Each case runs in a child process, as ``medsettle serve`` does: ``configure_logging`` sets
process-wide state (structlog's configuration, the root logging handler).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from typing import Any

from adapters.identity import redact
from gateway.logs import fresh_request_id

VALID = "11010519491231002X"
DIGIT_RUN = re.compile(r"[0-9]{17}")


def logged(code: str) -> tuple[list[dict[str, Any]], str]:
    """The JSON records a snippet writes to stderr after ``configure_logging("json")``, and the raw stderr."""
    script = "from gateway.logs import configure_logging, log\nconfigure_logging('json', 'info')\n" + textwrap.dedent(
        code
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"a stderr line is not JSON: {line!r}\n{result.stderr}") from None
    assert VALID not in result.stderr and not DIGIT_RUN.search(result.stderr), result.stderr
    return records, result.stderr


def test_ids_are_masked_in_nested_values_keys_numbers_and_objects():
    records, _ = logged(
        f"""
        log.info(
            "lookup",
            request_id="req{VALID}",
            body={{"{VALID}": ["x", "id {VALID}", ("t", "{VALID}")], "n": 110105194912310021}},
            error=ValueError("no person {VALID}"),
            raw=b"{VALID}",
        )
        """
    )
    (record,) = records
    assert record["event"] == "lookup" and record["request_id"] == "req110*************2X"
    assert record["body"]["110*************2X"][1] == "id 110*************2X"
    assert "*" in str(record["body"]["n"]) and "*" in record["error"] and "*" in record["raw"]


def test_an_exception_is_one_json_record_with_its_traceback_as_a_field():
    records, _ = logged(
        f"""
        try:
            raise RuntimeError("no person {VALID}")
        except RuntimeError:
            log.exception("unhandled_error")
        """
    )
    (record,) = records
    assert record["level"] == "error" and "Traceback" in record["exception"]
    assert "RuntimeError: no person 110*************2X" in record["exception"]


def test_stdlib_records_from_libraries_go_through_the_same_json_renderer():
    records, _ = logged(
        f"""
        import logging, warnings
        try:
            raise ValueError("bad header {VALID}")
        except ValueError:
            logging.getLogger("aiohttp.server").exception("Error handling request from %s", "req{VALID}")
        logging.getLogger("asyncio").warning("socket.send() raised exception.")
        logging.getLogger("quiet").debug("below the level: not shown")
        warnings.warn("deprecated {VALID}", DeprecationWarning, stacklevel=1)
        """
    )
    by_logger = {record.get("logger"): record for record in records}
    server = by_logger["aiohttp.server"]
    assert server["event"] == "Error handling request from req110*************2X"
    assert server["level"] == "error" and "timestamp" in server
    assert "Traceback" in server["exception"] and "ValueError: bad header 110*************2X" in server["exception"]
    assert by_logger["asyncio"]["level"] == "warning"
    assert "quiet" not in by_logger
    assert "DeprecationWarning" in by_logger["py.warnings"]["event"]


def test_a_fresh_request_id_is_never_altered_by_id_masking():
    # About one plain uuid4 hex in 200 has a run of 17 decimal digits, which masking would alter.
    ids = [fresh_request_id() for _ in range(20_000)]
    assert all(redact(request_id) == request_id and len(request_id) == 32 for request_id in ids)
    assert len(set(ids)) == len(ids)
