"""Errors of the knowledge store, all subclasses of :class:`~geoassist.errors.GeoAssistError`."""

from __future__ import annotations

from geoassist.errors import GeoAssistError


class KnowledgeStoreError(GeoAssistError):
    """Something is wrong with a knowledge store or with how it is used."""


class StoreNotFoundError(KnowledgeStoreError, FileNotFoundError):
    """A store path does not hold a knowledge store."""


class CorruptStoreError(KnowledgeStoreError):
    """A store's files are unreadable, truncated or inconsistent with its manifest."""


class EmbedderMismatchError(KnowledgeStoreError, ValueError):
    """A store is queried (or extended) with an embedder other than the one it was built with."""


class EmbedderUnavailableError(KnowledgeStoreError):
    """An embedder's weights cannot be found or loaded."""


class IngestError(KnowledgeStoreError, ValueError):
    """A source document cannot be read or has an invalid record."""
