"""Errors raised by the storage package."""


class StorageError(RuntimeError):
    """Base of the storage package's errors."""


class MigrationError(StorageError):
    """The schema could not be brought up to date."""
