from pydantic_settings import BaseSettings, SettingsConfigDict


class FixtureSettings(BaseSettings):
    """The domain's own knobs: LAMPLIGHTER_FIXTURE_* in the environment."""

    model_config = SettingsConfigDict(env_prefix="LAMPLIGHTER_FIXTURE_", extra="ignore")

    panel_title: str = "Sightings"
