"""Property-based API testing: schemathesis against /openapi.json finds no server error.

The schemathesis command line runs against a real server (in dry-run remediation mode, so
a generated ``run_action`` can change nothing), with the token, bounded in examples and
time. ``/api/events`` is left out: a stream never ends, so there is no response to check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from web_helpers import LiveServer, wait_for_samples


def _schemathesis() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("schemathesis is not installed in this environment (pip install '.[dev]')")
    return [found]


# Generated data comes from the schema alone: values are not copied out of earlier answers
# (an agent's list of commands would become a "pause all" that stalls sampling, and the
# 503 a stalled host rightly gets would count as a server error), and the operations run
# in the schema's order rather than one inferred from the response models.
_CONFIG = """
[phases.examples.extra-data-sources]
responses = false
[phases.coverage.extra-data-sources]
responses = false
[phases.fuzzing]
operation-ordering = "none"
[phases.fuzzing.extra-data-sources]
responses = false
"""


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(_CONFIG, encoding="utf-8")
    flags = {"remediation": {"mode": "dry_run"}}
    with LiveServer(tmp_path, flags=flags) as live:
        wait_for_samples(live, 2)

        def storage_open() -> bool:
            assert live.orchestrator is not None
            return bool(live.orchestrator.storage.is_open)

        live.wait_for(lambda: live.on_loop(storage_open), what="storage")
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
        result = subprocess.run(
            [
                *_schemathesis(),
                "--config-file",
                str(config_file),
                "run",
                f"{live.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {live.token}",
                "--checks",
                "not_a_server_error",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "12",
                "--max-time",
                "12",
                "--workers",
                "1",  # Python 3.11's ast.parse, used by hypothesis, is not thread-safe
                "--seed",
                "20240611",
                "--exclude-path",
                "/api/events",
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
                "--no-color",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
            env=env,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Server error" not in output
    assert "generated" in output  # it really ran cases
