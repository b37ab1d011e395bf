"""Imports every domain's models (from the manifests) so Alembic and tests see all tables."""

from lamplighter import domains

domains.import_models()
