"""What storage raises: one base class, and the one error that must stop a start-up."""

from __future__ import annotations

__all__ = ["SchemaVersionError", "StorageError"]


class StorageError(Exception):
    """A storage operation failed; the message names the database file and the reason.

    Writes made through the async :class:`~watchkeeper.storage.Storage` facade never
    raise it (they are counted and logged instead); queries and ``open`` do.
    """


class SchemaVersionError(StorageError):
    """The database was written by a newer watchkeeper than this one.

    Nothing is changed in the file: run the newer version, or point ``data_dir`` elsewhere.
    """
