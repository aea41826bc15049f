"""A writer process for the kill -9 test: commits in a loop and prints what it committed.

Run as ``python crash_writer.py <db path>``. Each line on stdout is the number of a round
whose sample, alert, action record and baseline were all committed before it was printed.
"""

from __future__ import annotations

import sys

from storage_helpers import T0, make_alert, make_record

from watchkeeper.storage import SyncStorage


def main(path: str) -> None:
    db = SyncStorage(path).open()
    round_no = 0
    while True:
        round_no += 1
        ts = T0 + round_no * 5
        db.write_sample(ts, {f"metric.{k}": float(round_no * 1000 + k) for k in range(100)})
        db.record_alert(make_alert("rule", f"s{round_no}", started_at=ts), "firing")
        db.record_action(make_record(f"r{round_no}", created_at=ts))
        db.save_baseline(f"b{round_no % 7}", {"round": round_no})
        sys.stdout.write(f"{round_no}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
