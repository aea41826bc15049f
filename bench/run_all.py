"""Run every benchmark in bench/ in turn (``make bench``); each writes bench/results/*.json.

python bench/run_all.py            # all of them
python bench/run_all.py bus sample # only these
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIPPED = 3  # a benchmark that needs an optional extra which is not installed


def main() -> int:
    wanted = set(sys.argv[1:])
    failed = []
    skipped = []
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        status = subprocess.run([sys.executable, str(script)], check=False).returncode
        if status == SKIPPED:
            skipped.append(name)
        elif status:
            failed.append(name)
    if skipped:
        print(f"skipped (an optional extra is missing): {', '.join(skipped)}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
