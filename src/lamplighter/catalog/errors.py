"""Catalog errors: the core hierarchy, with catalog wording."""

from __future__ import annotations

from lamplighter.core.errors import FieldError, ValidationFailed


class ImportFailed(ValidationFailed):
    """An import was refused; ``errors`` names each file, document and field."""

    slug = "catalog-import-failed"
    title = "Catalog import failed"


__all__ = ["FieldError", "ImportFailed"]
