"""``--set`` overrides that make a real daemon's alerts predictable in a test.

``QUIET_BUT_MEMORY``: a memory alert fires at once (memory is surely above 2 %) and every
other threshold is out of reach, so the only LLM calls are the ones a test makes happen.
Each item goes after its own ``--set``::

    argv = ["watchkeeper", "run"]
    for item in QUIET_BUT_MEMORY:
        argv += ["--set", item]
"""

from __future__ import annotations

__all__ = ["QUIET_BUT_MEMORY"]

QUIET_BUT_MEMORY: tuple[str, ...] = (
    "thresholds.memory_warning=1",
    "thresholds.memory_critical=2",
    "thresholds.cpu_warning=99",
    "thresholds.cpu_critical=100",
    "thresholds.load_warning=1000",
    "thresholds.load_critical=2000",
    "thresholds.disk_warning=99",
    "thresholds.disk_critical=100",
    "thresholds.inode_warning=99",
    "thresholds.inode_critical=100",
    "thresholds.swap_warning=99",
    "thresholds.swap_critical=100",
    "analyzer.for_seconds=0",
    "analyzer.runaway_for_seconds=3600",
    "remediation.mode=dry_run",
)
