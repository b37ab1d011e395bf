from pathlib import Path

from lamplighter.core.events import Subscription
from lamplighter.core.manifest import Manifest
from tests.fixture_domain.settings import FixtureSettings

SIGHTING = "fixture.sighting"

manifest = Manifest(
    name="fixture",
    api=("tests.fixture_domain.api:router",),
    cli={"fixture": "tests.fixture_domain.cli:fixture_app"},
    models=("tests.fixture_domain.models",),
    registers=("tests.fixture_domain.handlers",),
    subscriptions=(Subscription("catalog.entity_created", SIGHTING),),
    settings=FixtureSettings,
    entity_panels=("tests.fixture_domain.pages:sightings_panel",),
    migrations=Path(__file__).resolve().parent / "migrations",
)
