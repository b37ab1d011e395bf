"""Imports every domain's models so Alembic and tests see all tables."""

from lamplighter.core import models as core_models

__all__ = ["core_models"]
