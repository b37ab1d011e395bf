"""One settings object, read from `LAMPLIGHTER_*` environment variables."""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob Lamplighter has. The README's configuration table lists them all."""

    model_config = SettingsConfigDict(env_prefix="LAMPLIGHTER_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Where the SQLite file lives.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/lamplighter.db."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs cookies and encrypts secrets; generated into <data_dir> if unset.",
    )
    base_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1024 * 1024
    session_hours: int = 12
    cookie_secure: bool = False
    auth_cache_seconds: float = 5.0
    token_last_used_resolution_s: float = 60.0
    job_lease_s: float = 300.0
    job_backoff_base_s: float = 2.0
    job_backoff_max_s: float = 3600.0
    job_poll_s: float = 0.5
    job_batch_size: int = 100
    webhook_timeout_s: float = 10.0
    outbound_allow_internal: str = Field(
        default="",
        description="Comma-separated CIDR ranges of internal addresses that webhooks, "
        "http.request and catalog fetches may reach (e.g. 10.20.0.0/16); empty = none. "
        "Cloud metadata addresses stay refused.",
    )
    plugins: str = ""
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_auto_create: bool = False
    oidc_scope: str = "openid email profile"
    catalog_name_rules: dict[str, str] = Field(
        default_factory=dict,
        description='Extra naming rule per kind, e.g. {"resource": "^{team}-"}.',
    )
    catalog_max_file_bytes: int = 1024 * 1024
    catalog_fetch_allowlist: str = Field(
        default="",
        description="Comma-separated URL prefixes a catalog import with --fetch may read; "
        "empty = none.",
    )
    selfservice_git_provider_url: str = Field(
        default="", description="API base URL of the GitHub/GitLab/Gitea host for repo.create."
    )
    selfservice_git_provider_token: SecretStr | None = None
    selfservice_git_provider_org: str = ""
    selfservice_postgres_admin_url: SecretStr | None = Field(
        default=None, description="Admin connection URL of the server postgres.database uses."
    )
    selfservice_kafka_bootstrap: str = ""
    templates_dir: Path | None = Field(
        default=None, description="Directory of template YAML files the template sync reads."
    )
    templates_sync_on_start: bool = Field(
        default=True,
        description="Sync the shipped golden paths and templates_dir when the web app starts.",
    )
    selfservice_http_allowlist: str = Field(
        default="",
        description="Comma-separated URL prefixes http.request may call; empty = none.",
    )

    prometheus_url: str = Field(
        default="",
        description="Prometheus HTTP API base URL the SLOs on Prometheus are measured through "
        "(e.g. http://127.0.0.1:9090); empty = those SLOs have no data.",
    )
    prometheus_token: SecretStr | None = Field(
        default=None, description="Bearer token sent to Prometheus, if it needs one."
    )
    prometheus_timeout_s: float = 10.0
    slo_tier_policies: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Error budget policy per catalog tier over the default, e.g. "
        '{"3": {"on_exhausted": "notify"}}; the policy an SLO states wins.',
    )

    smtp_host: str = Field(
        default="",
        description="SMTP server that on-call email notifications go through; "
        "empty = email contact methods fail over to the next method.",
    )
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = "lamplighter@localhost"
    smtp_starttls: bool = False
    smtp_timeout_s: float = 10.0
    alert_ingest_rate_per_s: float = Field(
        default=2000.0,
        description="Alerts per second each integration key may send before answers are 429.",
    )
    alert_ingest_burst: int = 20000
    alert_link_ttl_hours: int = Field(
        default=24, description="How long the acknowledge/resolve links in notifications work."
    )

    @field_validator("outbound_allow_internal")
    @classmethod
    def _cidr_ranges(cls, value: str) -> str:
        for cidr in value.split(","):
            if cidr.strip():
                ipaddress.ip_network(cidr.strip(), strict=False)  # ValueError names it
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lamplighter.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    def effective_secret_key(self) -> bytes:
        """Return the configured key, or one generated once and kept in the data directory."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
