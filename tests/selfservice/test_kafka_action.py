"""kafka.topic on the in-memory FakeTopicAdmin (no Kafka broker can be installed here: see the
module docstring), and the real adapter's "broker unreachable" path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lamplighter.core.crypto import SecretBox
from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions import kafka as kafka_module
from lamplighter.selfservice.actions.base import ACTIONS, ActionError, StepContext
from lamplighter.selfservice.actions.kafka import (
    FakeTopicAdmin,
    KafkaTopic,
    KafkaTopicInput,
)
from tests.conftest import SYSTEM, TEST_SECRET


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeTopicAdmin:
    fake = FakeTopicAdmin(brokers=3)
    monkeypatch.setattr(kafka_module, "admin_factory", lambda settings: fake)
    return fake


def make_ctx(tmp_path: Path, *, run_id: int = 1, **settings: Any) -> StepContext:
    return StepContext(
        session=None,  # type: ignore[arg-type]  # this action writes no rows
        settings=Settings(data_dir=tmp_path, **settings),
        box=SecretBox(TEST_SECRET.encode()),
        actor=SYSTEM,
        run_id=run_id,
        step_id="topic",
        requesting_team_id=None,
    )


def topic(**values: Any) -> KafkaTopicInput:
    return KafkaTopicInput(**{"name": "payments.events", **values})


def test_registered_and_the_fake_is_the_default_without_brokers(tmp_path: Path) -> None:
    assert ACTIONS["kafka.topic"] is KafkaTopic
    assert isinstance(kafka_module.default_admin(Settings(data_dir=tmp_path)), FakeTopicAdmin)


def test_creates_the_topic_with_its_settings(cluster: FakeTopicAdmin, tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    output = KafkaTopic().run(ctx, topic(partitions=6, replication_factor=2, retention_ms=3600000))

    state = cluster.topics["payments.events"]
    assert (state.partitions, state.replication_factor) == (6, 2)
    assert state.configs == {"retention.ms": "3600000"}
    assert output.partitions == 6 and output.replication_factor == 2
    assert output.retention_ms == 3600000 and output.bootstrap == "fake"
    assert any("payments.events" in line for line in ctx.logs)


def test_second_attempt_returns_the_same_output(cluster: FakeTopicAdmin, tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    first = KafkaTopic().run(ctx, topic())
    second = KafkaTopic().run(ctx, topic())
    assert second == first
    assert list(cluster.topics) == ["payments.events"]


def test_taken_name_is_refused_and_left_alone(cluster: FakeTopicAdmin, tmp_path: Path) -> None:
    cluster.create("payments.events", partitions=1, replication_factor=1, configs={})
    ctx = make_ctx(tmp_path)

    with pytest.raises(ActionError) as caught:
        KafkaTopic().run(ctx, topic(partitions=12))
    assert caught.value.field == "name" and "already exists" in str(caught.value)

    KafkaTopic().compensate(ctx, topic(), None)
    assert cluster.topics["payments.events"].partitions == 1


def test_another_runs_topic_is_refused(cluster: FakeTopicAdmin, tmp_path: Path) -> None:
    KafkaTopic().run(make_ctx(tmp_path, run_id=1), topic())
    other = make_ctx(tmp_path, run_id=2)
    with pytest.raises(ActionError) as caught:
        KafkaTopic().run(other, topic())
    assert caught.value.field == "name"
    KafkaTopic().compensate(other, topic(), None)
    assert "payments.events" in cluster.topics


def test_compensate_deletes_the_topic(cluster: FakeTopicAdmin, tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    output = KafkaTopic().run(ctx, topic())
    KafkaTopic().compensate(ctx, topic(), output)
    assert cluster.topics == {}
    KafkaTopic().compensate(ctx, topic(), output)  # nothing left: still fine


def test_replication_beyond_the_cluster_is_a_field_error(
    cluster: FakeTopicAdmin, tmp_path: Path
) -> None:
    with pytest.raises(ActionError) as caught:
        KafkaTopic().run(make_ctx(tmp_path), topic(replication_factor=4))
    assert caught.value.field == "replication_factor"
    assert cluster.topics == {}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"name": "has space"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": ".."}, "name"),
        ({"name": "x" * 250}, "name"),
        ({"partitions": 0}, "partitions"),
        ({"partitions": 1001}, "partitions"),
        ({"replication_factor": 6}, "replication_factor"),
        ({"retention_ms": -2}, "retention_ms"),
    ],
)
def test_bad_input_names_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        topic(**values)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_unreachable_broker_is_retryable(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, selfservice_kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(ActionError) as caught:
        KafkaTopic().run(ctx, topic())
    assert caught.value.retryable and "cannot reach Kafka at 127.0.0.1:1" in str(caught.value)
