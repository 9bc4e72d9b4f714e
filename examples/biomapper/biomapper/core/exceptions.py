"""Exceptions raised by biomapper."""

from __future__ import annotations

from typing import Any


class BiomapperError(Exception):
    """Base class of biomapper errors."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class CacheError(BiomapperError):
    """A problem with the mapping cache database."""


class CacheStorageError(CacheError):
    """Mapping results could not be stored in the cache; nothing from the batch was stored."""


class CacheTransactionError(CacheError):
    """A cache write (trace logging) failed and was rolled back, or its input was malformed."""
