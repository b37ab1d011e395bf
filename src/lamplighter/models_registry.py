"""Imports every domain's models so Alembic and tests see all tables."""

from lamplighter.catalog import models as catalog_models
from lamplighter.core import models as core_models
from lamplighter.selfservice import grants as selfservice_grants  # noqa: F401
from lamplighter.selfservice import models as selfservice_models
from lamplighter.tickets import models as ticket_models

__all__ = ["catalog_models", "core_models", "selfservice_models", "ticket_models"]
