"""watchkeeper's history: metrics, alerts, the audit trail, events, analyses, baselines.

One SQLite file in the data dir, ``<data_dir>/watchkeeper.db``, in WAL mode. The daemon
uses the async :class:`Storage` (SQLite runs in its own threads, never on the loop); the
CLI and scripts may use the synchronous :class:`SyncStorage`::

    storage = Storage.in_data_dir(settings.data_dir)
    await storage.open()
    await storage.write_sample(sample.timestamp, sample.flat())
    rates = await storage.success_rates()

Schema, retention and durability are described in ``docs/storage.md``.
"""

from __future__ import annotations

from watchkeeper.storage.core import DB_FILENAME, SyncStorage
from watchkeeper.storage.errors import SchemaVersionError, StorageError
from watchkeeper.storage.facade import Storage
from watchkeeper.storage.migrations import LATEST_VERSION
from watchkeeper.storage.models import (
    ActivityEntry,
    AgentEvent,
    AlertTransition,
    AnalysisRecord,
    MaintenanceReport,
    MetricPoint,
    RetentionPolicy,
    StorageStats,
    SuccessRate,
    SuccessRates,
)

__all__ = [
    "DB_FILENAME",
    "LATEST_VERSION",
    "ActivityEntry",
    "AgentEvent",
    "AlertTransition",
    "AnalysisRecord",
    "MaintenanceReport",
    "MetricPoint",
    "RetentionPolicy",
    "SchemaVersionError",
    "Storage",
    "StorageError",
    "StorageStats",
    "SuccessRate",
    "SuccessRates",
    "SyncStorage",
]
