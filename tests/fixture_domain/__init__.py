"""A trivial domain, written as a plugin package, that proves adding a domain is adding a package.

It has one model, one API route, one panel on the catalog's entity page, one CLI command and one
subscription (to ``catalog.entity_created``). Nothing outside this package names it: it is turned
on by ``LAMPLIGHTER_PLUGINS=tests.fixture_domain`` (the manifest list's plugin half).
"""

from tests.fixture_domain.manifest import manifest

__all__ = ["manifest"]
