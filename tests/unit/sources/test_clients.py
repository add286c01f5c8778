"""kafka.library picks the consumer and the option names kafka.client is checked against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftwatch.config import KafkaConfig, parse_config
from driftwatch.errors import ConfigError
from driftwatch.sources.clients import client_problems, producer_options


def kafka(tmp_path: Path, **over: Any) -> KafkaConfig:
    (tmp_path / "ref.csv").write_text("x\n1\n2\n")
    settings: dict[str, Any] = {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"}
    settings.update(over)
    cfg = parse_config(
        {
            "kafka": settings,
            "models": [
                {
                    "name": "m",
                    "reference": "ref.csv",
                    "window": {"events": 10},
                    "features": {"x": "numerical"},
                }
            ],
        },
        tmp_path,
    )
    return cfg.kafka


def test_the_default_library_is_kafka_python_with_its_own_option_names(tmp_path):
    k = kafka(tmp_path, client={"security_protocol": "SSL", "fetch.wait.max.ms": 5})
    assert k.library == "kafka-python"
    assert client_problems(k) == ["kafka.client.fetch.wait.max.ms: unknown kafka-python option"]
    assert producer_options(kafka(tmp_path, client={"client_id": "x"})) == {"client_id": "x"}


def test_confluent_checks_librdkafka_names(tmp_path):
    assert client_problems(kafka(tmp_path, library="confluent")) == []
    good = kafka(
        tmp_path,
        library="confluent",
        client={"session.timeout.ms": 6000, "max.poll.interval.ms": 10000},
    )
    assert client_problems(good) == []
    bad = kafka(tmp_path, library="confluent", client={"fetch_max_wait_ms": 5})
    problems = client_problems(bad)
    assert len(problems) == 1 and problems[0].startswith("kafka.client.fetch_max_wait_ms")


def test_an_unknown_library_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        kafka(tmp_path, library="rdkafka")
    assert "kafka.library" in str(err.value)


def test_confluent_connection_options_reach_the_kafka_python_producers(tmp_path):
    k = kafka(
        tmp_path,
        library="confluent",
        client={
            "security.protocol": "sasl_ssl",
            "sasl.mechanisms": "plain",
            "sasl.username": "u",
            "sasl.password": "p",
            "ssl.ca.location": "/ca.pem",
            "ssl.endpoint.identification.algorithm": "none",
            "fetch.wait.max.ms": 5,  # consumer tuning: not for the producers
        },
    )
    assert producer_options(k) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
        "ssl_cafile": "/ca.pem",
        "ssl_check_hostname": False,
    }


def test_confluent_connection_options_the_producers_cannot_take_are_refused(tmp_path):
    k = kafka(
        tmp_path,
        library="confluent",
        client={"security.protocol": "SSL", "sasl.oauthbearer.method": "default"},
    )
    assert [p for p in client_problems(k) if "with library: confluent" in p] == [
        p for p in client_problems(k) if p.startswith("kafka.client.sasl.oauthbearer.method")
    ]
    assert any(
        p.startswith("kafka.client.sasl.oauthbearer.method: with library: confluent")
        for p in client_problems(k)
    )


def test_the_poll_size_defaults_per_library(tmp_path):
    from driftwatch.sources.clients import CONFLUENT_POLL_RECORDS, KAFKA_PYTHON_POLL_RECORDS

    assert kafka(tmp_path).max_poll_records is None  # the library's own default
    assert (KAFKA_PYTHON_POLL_RECORDS, CONFLUENT_POLL_RECORDS) == (500, 5000)
