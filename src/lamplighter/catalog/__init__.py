"""Catalog: services, APIs, resources, systems, domains and platforms, each with one accountable owner."""
