"""``kafka.topic``: a Kafka topic with its partitions, replication factor and retention.

The action talks to a small :class:`TopicAdmin` interface. Two implementations:

- :class:`KafkaTopicAdmin`, over the Kafka admin protocol with the pure-Python ``kafka-python-ng``
  client, used when ``LAMPLIGHTER_SELFSERVICE_KAFKA_BOOTSTRAP`` names brokers;
- :class:`FakeTopicAdmin`, in memory, used when that setting is empty (development) and by the
  tests.

**Tested against the fake only.** No Kafka-protocol broker can be installed from the registries
this project's machines and CI reach (Kafka and Redpanda ship as JVM or native downloads outside
them), so the tests prove the action's behaviour (validation, idempotency, refusal of taken names,
compensation) on the fake, and only the "broker unreachable" path of the real adapter.

Ownership mark: Kafka topics carry no free-form metadata, so the mark is a committed offset of
the consumer group ``lamplighter.topic-marks`` on the topic's partition 0, whose metadata string
is ``lamplighter <ctx.key>``. It is written right after the topic is created; a second attempt of
the step finds it and returns the same output, and compensate deletes only a marked topic.

Example step::

    - id: events
      action: kafka.topic
      input: {name: "payments.events", partitions: 6, replication_factor: 3}
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field, field_validator

from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    Ownership,
    StepContext,
    Unavailable,
    register,
)

TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"
MARK_GROUP = "lamplighter.topic-marks"
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


# -- the interface and its fake ---------------------------------------------------------------
@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


class TopicExists(Exception):
    """The broker says a topic of that name exists."""


class TopicAdmin(Protocol):
    """What kafka.topic needs from a cluster. Errors: TopicExists, or ActionError."""

    address: str

    def describe(self, name: str) -> TopicState | None: ...

    def create(
        self, name: str, *, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None: ...

    def delete(self, name: str) -> None: ...

    def mark(self, name: str) -> str | None: ...

    def set_mark(self, name: str, mark: str) -> None: ...

    def close(self) -> None: ...


class FakeTopicAdmin:
    """An in-memory cluster of ``brokers`` brokers; keeps state across instances if shared."""

    address = "fake"

    def __init__(self, *, brokers: int = 3) -> None:
        self.brokers = brokers
        self.topics: dict[str, TopicState] = {}
        self.marks: dict[str, str] = {}
        self._lock = threading.Lock()

    def describe(self, name: str) -> TopicState | None:
        return self.topics.get(name)

    def create(
        self, name: str, *, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        if replication_factor > self.brokers:
            raise ActionError(
                f"replication factor {replication_factor} is larger than the "
                f"{self.brokers} available brokers",
                field="replication_factor",
            )
        with self._lock:
            if name in self.topics:
                raise TopicExists(name)
            self.topics[name] = TopicState(name, partitions, replication_factor, dict(configs))

    def delete(self, name: str) -> None:
        with self._lock:
            self.topics.pop(name, None)
            self.marks.pop(name, None)

    def mark(self, name: str) -> str | None:
        return self.marks.get(name)

    def set_mark(self, name: str, mark: str) -> None:
        self.marks[name] = mark

    def close(self) -> None:
        pass


# -- the real adapter ---------------------------------------------------------------------------
def _kafka(module: str) -> Any:
    """A kafka-python-ng module, imported on first use (the client ships no type hints)."""
    return importlib.import_module(f"kafka.{module}")


class KafkaTopicAdmin:
    """The Kafka admin protocol through ``kafka-python-ng`` (not exercised against a broker here)."""

    def __init__(self, bootstrap: str) -> None:
        self.address = bootstrap
        try:
            self._client = _kafka("admin").KafkaAdminClient(
                bootstrap_servers=bootstrap.split(","),
                client_id="lamplighter",
                request_timeout_ms=15000,
            )
        except _kafka("errors").KafkaError as exc:
            raise ActionError(
                f"cannot reach Kafka at {bootstrap}: {exc!r}", retryable=True
            ) from exc

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        errors = _kafka("errors")

        try:
            return call()
        except errors.TopicAlreadyExistsError as exc:
            raise TopicExists(what) from exc
        except errors.InvalidReplicationFactorError as exc:
            raise ActionError(f"Kafka refused: {exc}", field="replication_factor") from exc
        except errors.InvalidPartitionsError as exc:
            raise ActionError(f"Kafka refused: {exc}", field="partitions") from exc
        except (errors.InvalidConfigurationError, errors.PolicyViolationError) as exc:
            raise ActionError(f"Kafka refused: {exc}") from exc
        except errors.KafkaError as exc:
            retryable = getattr(exc, "retriable", False) or isinstance(
                exc, errors.NoBrokersAvailable | errors.KafkaConnectionError
            )
            raise ActionError(f"Kafka failed to {what}: {exc!r}", retryable=retryable) from exc

    def describe(self, name: str) -> TopicState | None:
        topics = self._call("describe the topic", lambda: self._client.describe_topics([name]))
        for topic in topics:
            if topic.get("topic") == name and topic.get("error_code", 0) == 0:
                partitions = topic.get("partitions") or []
                replicas = len(partitions[0].get("replicas") or []) if partitions else 0
                return TopicState(name, len(partitions), replicas)
        return None

    def create(
        self, name: str, *, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        topic = _kafka("admin").NewTopic(
            name, partitions, replication_factor, topic_configs=configs
        )
        self._call("create the topic", lambda: self._client.create_topics([topic]))

    def delete(self, name: str) -> None:
        errors = _kafka("errors")
        try:
            self._call("delete the topic", lambda: self._client.delete_topics([name]))
        except ActionError as exc:
            if not isinstance(exc.__cause__, errors.UnknownTopicOrPartitionError):
                raise

    def mark(self, name: str) -> str | None:
        partition = _kafka("structs").TopicPartition(name, 0)
        offsets = self._call(
            "read the topic's mark",
            lambda: self._client.list_consumer_group_offsets(MARK_GROUP, partitions=[partition]),
        )
        committed = offsets.get(partition)
        return str(committed.metadata) if committed is not None and committed.offset >= 0 else None

    def set_mark(self, name: str, mark: str) -> None:
        structs = _kafka("structs")

        def commit() -> None:
            consumer = _kafka("consumer").KafkaConsumer(
                bootstrap_servers=self.address.split(","),
                group_id=MARK_GROUP,
                enable_auto_commit=False,
                client_id="lamplighter",
            )
            try:
                consumer.commit(
                    {structs.TopicPartition(name, 0): structs.OffsetAndMetadata(0, mark)}
                )
            finally:
                consumer.close()

        self._call("mark the topic", commit)

    def close(self) -> None:
        self._client.close()


_FAKE = FakeTopicAdmin()


def default_admin(settings: Settings) -> TopicAdmin:
    if settings.selfservice_kafka_bootstrap.strip():
        return KafkaTopicAdmin(settings.selfservice_kafka_bootstrap.strip())
    return _FAKE


# Tests swap this for a fresh FakeTopicAdmin.
admin_factory: Callable[[Settings], TopicAdmin] = default_admin


# -- the action ---------------------------------------------------------------------------------
class KafkaTopicInput(ActionInput):
    name: str = Field(pattern=TOPIC_PATTERN, description="Topic name: letters, digits, . _ -")
    partitions: int = Field(default=3, ge=1, le=1000)
    replication_factor: int = Field(default=3, ge=1, le=5)
    retention_ms: int = Field(
        default=DEFAULT_RETENTION_MS, ge=-1, description="How long messages are kept; -1 = ever."
    )

    @field_validator("name")
    @classmethod
    def _not_dots(cls, name: str) -> str:
        if name in {".", ".."}:
            raise ValueError("'.' and '..' are not topic names")
        return name


class KafkaTopicOutput(ActionOutput):
    name: str
    partitions: int
    replication_factor: int
    retention_ms: int
    bootstrap: str


def _mark(key: str) -> str:
    return f"lamplighter {key}"


@register
class KafkaTopic(Action):
    """Create a Kafka topic.

    Input ``{"name": "payments.events", "partitions": 6, "replication_factor": 3}`` creates the
    topic with 7 days of retention and outputs its settings and the cluster's bootstrap address.
    """

    name = "kafka.topic"
    title = "Create a Kafka topic"
    description = "Create a topic with its partitions, replication factor and retention."
    Input = KafkaTopicInput
    Output = KafkaTopicOutput
    ownership = Ownership(
        creates="a topic; a topic that exists without this step's mark is refused, never adopted",
    )
    risk = "low"

    @classmethod
    def preflight(cls, settings: Settings, data: Mapping[str, Any] | None) -> Unavailable | None:
        # Without a cluster the default admin is an in-memory fake: a topic "made" there would
        # exist nowhere, so the action is unavailable (tests swap ``admin_factory`` for theirs).
        if admin_factory is default_admin and not settings.selfservice_kafka_bootstrap.strip():
            return Unavailable(
                "no Kafka cluster is configured", "LAMPLIGHTER_SELFSERVICE_KAFKA_BOOTSTRAP"
            )
        return None

    def run(self, ctx: StepContext, data: KafkaTopicInput) -> KafkaTopicOutput:
        admin = admin_factory(ctx.settings)
        try:
            existing = admin.describe(data.name)
            if existing is not None and admin.mark(data.name) != _mark(ctx.key):
                raise ActionError(f"topic {data.name!r} already exists", field="name")
            if existing is None:
                try:
                    admin.create(
                        data.name,
                        partitions=data.partitions,
                        replication_factor=data.replication_factor,
                        configs={"retention.ms": str(data.retention_ms)},
                    )
                except TopicExists:  # created meanwhile by someone else
                    raise ActionError(f"topic {data.name!r} already exists", field="name") from None
                admin.set_mark(data.name, _mark(ctx.key))
                ctx.log(f"created topic {data.name} on {admin.address}")
            state = admin.describe(data.name)
            return KafkaTopicOutput(
                name=data.name,
                partitions=state.partitions if state else data.partitions,
                replication_factor=state.replication_factor if state else data.replication_factor,
                retention_ms=data.retention_ms,
                bootstrap=admin.address,
            )
        finally:
            admin.close()

    def compensate(
        self, ctx: StepContext, data: KafkaTopicInput, output: KafkaTopicOutput | None
    ) -> None:
        admin = admin_factory(ctx.settings)
        try:
            if admin.describe(data.name) is not None and admin.mark(data.name) == _mark(ctx.key):
                admin.delete(data.name)
                ctx.log(f"deleted topic {data.name}")
        finally:
            admin.close()
