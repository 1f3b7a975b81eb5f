"""One settings object for every process, read from `HI_*` environment variables.

Defaults are safe for a developer machine: everything on 127.0.0.1, state under `.state/`.
Secrets (database password, JWT keys) are never logged: `SecretStr` hides them in reprs.
"""

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from schemas.read_models import (
    ARCHIVE_CHECKPOINT,
    PROPERTIES_ALIAS,
    SAVED_SEARCHES_ALIAS,
    properties_search_checkpoint,
    saved_searches_checkpoint,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT = "development"
# Cluster mode's defaults (three brokers, a Postgres replica, two OpenSearch nodes, two of every process),
# shared with ops/stack.sh and the Makefile.
CLUSTER_ENV = PROJECT_ROOT / "config" / "cluster.env"


def cluster_mode() -> bool:
    return os.environ.get("HI_CLUSTER", "").strip().lower() not in ("", "0", "false", "no")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HI_", env_file=".env", extra="ignore")

    # `development` (a developer's machine, tests) accepts the published defaults of the secrets below;
    # any other environment refuses to start with them (`refuse_default_secrets`).
    env: str = Field(default=DEVELOPMENT, pattern=r"^[a-z][a-z0-9-]{0,31}$")
    # HI_CLUSTER=1: config/cluster.env's values become the defaults (the environment still wins).
    cluster: bool = False
    # Relative to the project, as ops/stack.sh takes it.
    state_dir: Path = PROJECT_ROOT / ".state"

    # The native stack's ports: ops/stack.sh reads the same HI_* variables, so one set of them moves a stack
    # (a second one beside the shared one, say) and every process that talks to it. The endpoints left empty
    # are the ports on 127.0.0.1; set explicitly (another host, several brokers) they win.
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    redis_port: int = Field(default=6380, ge=1, le=65535)
    opensearch_port: int = Field(default=9200, ge=1, le=65535)
    kafka_bootstrap: str = ""
    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(default=5433, ge=1, le=65535)
    postgres_db: str = "hyderabad"
    postgres_user: str = "hyderabad"
    postgres_password: SecretStr = SecretStr("hyderabad-local")
    postgres_pool_max: int = 10
    # A streaming replica for queries (cluster mode); empty: queries read the primary. Commands, projections
    # and every write use the primary. Queries leave the replica for the primary while it does not answer
    # or has not replayed what the primary had this long ago (api/common/reads.py), so a reader is never
    # served older data than this bound without the consistency wait saying so.
    postgres_replica_host: str = ""
    postgres_replica_port: int = Field(default=0, ge=0, le=65535)
    postgres_replica_max_lag_seconds: float = Field(default=1.0, gt=0)
    postgres_replica_check_seconds: float = Field(default=0.25, gt=0)
    redis_url: str = ""
    opensearch_url: str = ""
    # Replicas of every search index (one per index with two OpenSearch nodes; none on one node).
    opensearch_replicas: int = Field(default=0, ge=0)
    # Every topic's replication factor and min.insync.replicas (ops/topics.py): 1 on one broker, 3 and 2 on
    # three, so a broker may die without losing an acknowledged (acks=all) event or refusing writes.
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_min_insync_replicas: int = Field(default=1, ge=1)
    # `python -m ops.run`: processes of each stream worker (one consumer group sharing its partitions) and
    # server processes of each service (uvicorn --workers).
    worker_instances: int = Field(default=1, ge=1)
    service_processes: int = Field(default=1, ge=1)

    # Faust: each projection is its own app, and an app's id is its Kafka consumer group.
    streams_store: str = "memory://"
    # The archive's default group shares its name with the event store's checkpoint.
    archive_group: str = ARCHIVE_CHECKPOINT
    # Comma-separated topics for the archive to read instead of every event topic (benchmarks only).
    archive_topics: str = ""
    archive_batch_size: int = Field(default=1000, ge=1)
    archive_batch_seconds: float = Field(default=0.2, gt=0)
    # The property read-model projection (streams/properties/projection_app.py): its own app and group.
    property_projection_group: str = "property-projection"
    property_projection_batch_size: int = Field(default=500, ge=1)
    # How long a batch waits to fill: at low rates every event waits this long before it is visible.
    property_projection_batch_seconds: float = Field(default=0.02, gt=0)
    # The property search projection (streams/properties/search_app.py): OpenSearch, its own group.
    property_search_projection_group: str = "property-search-projection"
    property_search_projection_batch_seconds: float = Field(default=0.02, gt=0)
    # Queries and the projection use the alias; a rebuild (`ops.reindex`) fills a new index, then swaps the alias.
    # The users read-model projection (streams/users/projection_app.py).
    user_projection_group: str = "user-projection"
    # User history (streams/history): the live projection's group, the replay worker's group, and the
    # namespace whose generations they keep (tests run their own namespace beside the real one).
    history_group: str = "user-history"
    history_replay_group: str = "user-history-replayer"
    history_namespace: str = Field(default="main", pattern=r"^[a-z][a-z0-9_]{0,23}$")
    # Comma-separated topics for history to read instead of its five (benchmarks only).
    history_topics: str = ""
    history_batch_size: int = Field(default=1000, ge=1)
    history_batch_seconds: float = Field(default=0.02, gt=0)
    # Records per batch when a rebuild loads a fresh generation (aiokafka getmany + COPY).
    history_rebuild_batch_size: int = Field(default=5000, ge=1)
    # A ceiling on a rebuild's read rate, so a rebuild on a busy primary leaves it room; 0 means as fast as
    # it goes (about 24,000 events/s here).
    history_rebuild_max_events_per_second: float = Field(default=0.0, ge=0)
    # How long a point-in-time copy (a rebuild with `until`) is kept after its job finished; then the replay
    # worker drops it. 0 keeps copies forever.
    history_snapshot_retention_seconds: float = Field(default=30 * 86400.0, ge=0)
    opensearch_properties_alias: str = PROPERTIES_ALIAS
    # Search (api/search, streams/searches): saved searches as percolator queries behind their own alias;
    # indices are `<alias>-v<mapping version>-<stamp>`, made by `ops.search_index`, rebuilt by `ops.reindex`.
    opensearch_saved_searches_alias: str = SAVED_SEARCHES_ALIAS
    search_projection_group: str = "search-projection"
    search_projection_batch_seconds: float = Field(default=0.02, gt=0)
    saved_search_matcher_group: str = "saved-search-matcher"
    saved_search_matcher_batch_seconds: float = Field(default=0.02, gt=0)
    max_saved_searches_per_user: int = Field(default=50, ge=1)
    # The property decider decides commands in batches and waits for the broker once per batch.
    decider_batch_size: int = Field(default=200, ge=1)
    decider_batch_seconds: float = Field(default=0.003, gt=0)
    # A worker that died without leaving its group holds its partitions this long; short enough that a
    # restarted worker takes over quickly, long enough to ride out a GC pause.
    streams_session_timeout_seconds: float = Field(default=10.0, gt=0)

    jwt_issuer: str = "hyderabad-infra"
    jwt_audience: str = "hyderabad-api"
    jwt_access_ttl_seconds: int = 900
    # Where the EdDSA signing keys live; generated on first run when missing.
    jwt_key_dir: Path | None = None

    # Refresh tokens (opaque, stored hashed in Redis) live this long; each use rotates them.
    refresh_ttl_seconds: int = 30 * 24 * 60 * 60
    # Login throttling (api/user/login_limits.py): no lockout, growing delays. Past a scope's free failures
    # the next attempt waits 2^k s (k = failures beyond them), up to the scope's longest delay. Scopes: one
    # account from one address; one account from anywhere (more failures, shorter delays, so a guesser
    # elsewhere barely slows the owner); one address over all accounts (high: carrier-grade NAT).
    login_pair_free_failures: int = Field(default=5, ge=1)
    login_pair_max_delay_seconds: int = Field(default=15 * 60, ge=1)
    login_account_free_failures: int = Field(default=10, ge=1)
    login_account_max_delay_seconds: int = Field(default=60, ge=1)
    login_address_free_failures: int = Field(default=100, ge=1)
    login_address_max_delay_seconds: int = Field(default=15 * 60, ge=1)
    # A scope's failures are forgotten this long after its last one.
    login_failure_window_seconds: int = Field(default=60 * 60, ge=1)
    # Registrations per client address and per email address in a window (a 409 tells whether an email has
    # an account: this bounds how fast anyone can ask).
    registration_max_per_address: int = Field(default=20, ge=1)
    registration_max_per_email: int = Field(default=5, ge=1)
    registration_window_seconds: int = Field(default=60 * 60, ge=1)
    # Views of a listing (api/property/views.py): one counted per viewer in the window; at most this many
    # anonymous viewers (address + user agent) of one listing per address and window; views an address
    # may send a minute (429 past it).
    view_window_seconds: int = Field(default=30 * 60, ge=1)
    view_max_anonymous_per_address: int = Field(default=5, ge=1)
    view_max_per_address_per_minute: int = Field(default=600, ge=1)
    # User directory searches (GET /api/users/search) per signed-in user a minute.
    user_search_max_per_minute: int = Field(default=30, ge=1)
    # The HMAC secret of email keys (`schemas/users.py` `email_key`): the registry's Kafka keys and table
    # never hold an address, nor a bare hash of one. Changing it re-keys every reservation: set it once.
    email_key_secret: SecretStr = SecretStr("hyderabad-local-email-key")
    # Proxies whose X-Forwarded-For is believed (comma-separated addresses or networks, e.g. the load
    # balancer's `10.0.0.0/8`); the client is the rightmost hop that is not one of them. Empty: the peer.
    trusted_proxies: str = ""

    # The largest request body other than an upload (uploads have the file_max_* limits): past it, 413
    # before the body is read whole, so a body cannot grow a process by more than this.
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # How long a command endpoint waits for its decider before answering 503 (the command may still land).
    command_wait_seconds: float = Field(default=5.0, gt=0)
    # How long a query sent with X-Consistency-Token waits for its store to catch up.
    consistency_wait_seconds: float = Field(default=2.0, gt=0)
    # Where uploaded images and files are kept, content-addressed; defaults under the state dir.
    blob_dir: Path | None = None

    # Files (api/file, streams/files, storage/). `local`: content-addressed under blob_dir; `s3`: a bucket.
    blob_backend: str = Field(default="local", pattern="^(local|s3)$")
    s3_bucket: str = "hyderabad-files"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None  # e.g. a MinIO endpoint; None means AWS itself
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Largest single upload (a PDF of a sale deed with scans); photos and floor-plan images have their own.
    file_max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    file_max_image_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    # Pixels an image may announce (a decompression bomb announces billions); 120 MP covers phone cameras.
    file_max_image_pixels: int = Field(default=120_000_000, ge=1)
    file_bulk_max_files: int = Field(default=20, ge=1)
    # A whole bulk request; a part past it is refused with 413.
    file_max_bulk_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    file_projection_group: str = "file-projection"
    file_optimizer_group: str = "file-optimizer"
    # Garbage collection of blobs nothing refers to (run by the optimiser worker; 0 turns it off). The grace
    # must exceed the time from an upload to its event being projected, or fresh bytes could be collected.
    file_gc_interval_seconds: float = Field(default=300.0, ge=0)
    file_gc_grace_seconds: float = Field(default=3600.0, ge=0)

    # Notifications (api/notification, streams/notifications). The delivery reactor's group is also the
    # name its rows in `notification_deliveries` carry, so a test's reactor never takes a deployment's rows.
    notification_delivery_group: str = "notification-delivery"
    notification_projection_group: str = "notification-projection"
    # SMTP: the local mailbox (`python -m ops.mailbox serve`, started by `make run`) by default.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_starttls: bool = False  # STARTTLS after EHLO (port 587 relays)
    smtp_tls: bool = False  # TLS from the first byte (port 465)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_connections: int = Field(default=4, ge=1, le=64)
    mail_from: str = "Hyderabad Infra <no-reply@hyderabad-infra.local>"
    # The SMS gateway's HTTP API (the local sink, `python -m ops.sms_sink serve`, by default).
    sms_api_url: str = "http://127.0.0.1:8095/v1/messages"
    sms_api_key: SecretStr = SecretStr("local-sms-key")
    sms_sender: str = "HYDINF"
    sms_timeout_seconds: float = Field(default=10.0, gt=0)
    # Where the local mailbox and SMS sink keep what they receive; default under the state dir.
    mailbox_dir: Path | None = None
    sms_sink_dir: Path | None = None
    sms_sink_port: int = 8095
    # Retries of a channel on transient failures: backoff from base doubling to max, then dead letter.
    notification_max_attempts: int = Field(default=12, ge=1)
    notification_retry_base_seconds: float = Field(default=1.0, gt=0)
    notification_retry_max_seconds: float = Field(default=600.0, gt=0)
    # The dispatcher is woken by what its worker takes in, and otherwise sleeps until the next delivery
    # falls due or a lease runs out: at least poll_seconds, at most idle_seconds (other workers' requests,
    # outcomes a stopped worker stored but did not report). And how many per round.
    notification_poll_seconds: float = Field(default=0.25, gt=0)
    notification_idle_seconds: float = Field(default=5.0, gt=0)
    notification_dispatch_batch: int = Field(default=200, ge=1)
    # A claimed delivery not finished within this is taken over by another dispatcher (a crashed worker).
    notification_lease_seconds: float = Field(default=60.0, gt=0)
    # Alerts and welcomes for triggers older than this are not sent (a reactor replayed from the start
    # must not greet every user again).
    notification_trigger_max_age_seconds: float = Field(default=24 * 60 * 60, gt=0)
    # A request not sent within this (a reactor down for days, or replayed from the start) is suppressed
    # as expired rather than sent late; it must exceed the longest quiet hours (under a day).
    notification_expiry_seconds: float = Field(default=3 * 24 * 60 * 60, gt=0)
    # Messages one user sends to others: at most this many per sender in a window (429 beyond).
    notification_message_limit: int = Field(default=30, ge=1)
    notification_message_window_seconds: int = Field(default=3600, ge=1)
    # Links in messages (listing pages, preferences for unsubscribing).
    public_web_url: str = "http://127.0.0.1:8085"

    # Prometheus metrics: services at /metrics (off only to measure their cost); a stream worker on its own
    # port, 0 meaning none (ops/run.py gives each worker one), refreshing consumer lag every interval.
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Prometheus scrapes every 15 s (ops/prometheus/prometheus.yml): sampling more often asks Kafka for
    # numbers nobody reads, from every worker.
    metrics_interval_seconds: float = Field(default=15.0, gt=0)

    # Anonymous answers of the routes a service shares (api/common/shared_answers.py: searches,
    # suggestions, the search form's values, featured and recent listings) are kept this long and given
    # to everyone asking the same; 0 turns sharing off. Signed-in and consistency-token requests never share.
    shared_answer_seconds: float = Field(default=1.0, ge=0)

    # How long `/ready` waits for one dependency before calling it down.
    ready_timeout_seconds: float = Field(default=1.5, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings]
        if cluster_mode():
            sources.append(DotEnvSettingsSource(settings_cls, env_file=CLUSTER_ENV))
        return (*sources, file_secret_settings)

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path) -> Path:
        return PROJECT_ROOT / value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # a typo fails at startup, not per request
        return value

    @model_validator(mode="after")
    def _endpoints_from_ports(self) -> Self:
        self.kafka_bootstrap = self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"
        self.redis_url = self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"
        self.opensearch_url = self.opensearch_url or f"http://127.0.0.1:{self.opensearch_port}"
        return self

    @property
    def properties_search_checkpoint(self) -> str:
        """The `projection_checkpoints` name of "searchable in the properties alias": one per alias, so a
        projection into another alias (a test's, a benchmark's) never vouches for this one."""
        return properties_search_checkpoint(self.opensearch_properties_alias)

    @property
    def saved_searches_checkpoint(self) -> str:
        """Likewise for "registered in the saved-searches (percolator) alias"."""
        return saved_searches_checkpoint(self.opensearch_saved_searches_alias)

    @property
    def history_topic_override(self) -> list[str]:
        """`history_topics` as names; empty: history reads its five topics (workers and service alike)."""
        return [name.strip() for name in self.history_topics.split(",") if name.strip()]

    @property
    def postgres_dsn(self) -> str:
        return (
            f"host={self.postgres_host} port={self.postgres_port} dbname={self.postgres_db} "
            f"user={self.postgres_user} password={self.postgres_password.get_secret_value()}"
        )

    @property
    def postgres_replica_dsn(self) -> str:
        """The replica's DSN (same database and role as the primary); empty when there is none."""
        if not (self.postgres_replica_host and self.postgres_replica_port):
            return ""
        return (
            f"host={self.postgres_replica_host} port={self.postgres_replica_port} dbname={self.postgres_db} "
            f"user={self.postgres_user} password={self.postgres_password.get_secret_value()}"
        )

    @property
    def blobs_dir(self) -> Path:
        return self.blob_dir or self.state_dir / "blobs"

    @property
    def mailbox_path(self) -> Path:
        return self.mailbox_dir or self.state_dir / "mailbox"

    @property
    def sms_sink_path(self) -> Path:
        return self.sms_sink_dir or self.state_dir / "sms"

    @property
    def keys_dir(self) -> Path:
        return self.jwt_key_dir or self.state_dir / "keys"


# Secrets whose defaults are written above for everyone to read: fine on a developer's machine, a hole
# anywhere else (with the default email secret, the email keys Kafka keeps forever can be matched
# against address lists).
DEFAULT_SECRETS = ("postgres_password", "email_key_secret", "sms_api_key")


class InsecureSettings(RuntimeError):
    """Startup refused: a secret still has its published default outside development."""


def default_secrets(settings: Settings) -> list[str]:
    """The environment variables of the secrets still at their defaults (names only, never values)."""
    still = []
    for name in DEFAULT_SECRETS:
        default = Settings.model_fields[name].default
        if getattr(settings, name).get_secret_value() == default.get_secret_value():
            still.append(f"HI_{name.upper()}")
    return still


def refuse_default_secrets(settings: Settings) -> None:
    if settings.env == DEVELOPMENT:
        return
    if unset := default_secrets(settings):
        raise InsecureSettings(
            f"HI_ENV={settings.env} refuses to start with development defaults: set {', '.join(unset)} "
            "(each a secret of its own)"
        )


@lru_cache
def get_settings() -> Settings:
    """Every process's settings; outside development, startup stops here if a secret is a default."""
    settings = Settings()
    refuse_default_secrets(settings)
    return settings
