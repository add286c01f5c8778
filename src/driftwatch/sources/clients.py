"""``kafka.library``: the one place that picks the consumer and checks ``kafka.client``.

driftwatch's own producers (dead letters, the state topic) always use kafka-python: they
are off the hot path. With ``library: confluent``, ``kafka.client`` holds librdkafka
options; the connection and security ones among them are translated for those producers
(:data:`PRODUCER_KEYS`), so a SASL/TLS cluster needs them written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwatch.config import KafkaConfig
from driftwatch.sources.base import Consumer

#: librdkafka option -> kafka-python option, for driftwatch's kafka-python producers
#: when ``library: confluent``. Other librdkafka options tune the consumer only.
PRODUCER_KEYS = {
    "client.id": "client_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "ssl.crl.location": "ssl_crlfile",
}
_UPPER = {"security_protocol", "sasl_mechanism"}

#: Records per poll unless ``kafka.max_poll_records`` is set, per library (measured at 20
#: features, ``python -m bench ingest``): kafka-python builds its records in Python and
#: slows down with larger polls (115k ev/s at 500, 93k at 5,000); librdkafka hands them
#: over from C, and 5,000 spreads the per-poll cost (the decoder takes 500 at a time).
KAFKA_PYTHON_POLL_RECORDS = 500
CONFLUENT_POLL_RECORDS = 5000


#: librdkafka option prefixes about reaching the cluster: with ``library: confluent`` each
#: one must be translatable for driftwatch's own producers, else they could not connect.
_CONNECTION_PREFIXES = ("security.", "sasl.", "ssl.", "ssl_", "enable.ssl.", "oauthbearer")
_TRANSLATED = {*PRODUCER_KEYS, "ssl.endpoint.identification.algorithm"}


def client_problems(kafka: KafkaConfig) -> list[str]:
    """Problems with ``kafka.client`` for the chosen library, each naming its key."""
    if kafka.library == "confluent":
        try:
            from driftwatch.sources.confluent import check_client_options as check_confluent
        except ImportError as exc:  # its message names the extra driftwatch[fast]
            return [str(exc)]
        problems = check_confluent(kafka.client)
        problems += [
            f"kafka.client.{key}: with library: confluent, driftwatch's own producers (dead "
            "letters, state topic) use kafka-python and cannot take this option; supported "
            f"connection options: {', '.join(sorted(_TRANSLATED))}"
            for key in kafka.client
            if key.startswith(_CONNECTION_PREFIXES) and key not in _TRANSLATED
        ]
        return problems
    from driftwatch.sources.kafka import check_client_options

    return check_client_options(kafka.client)


def producer_options(kafka: KafkaConfig) -> dict[str, Any]:
    """kafka-python options for driftwatch's own producers."""
    if kafka.library != "confluent":
        return dict(kafka.client)
    return _translate(kafka.client)


def _translate(options: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = PRODUCER_KEYS.get(key)
        if name is not None:
            out[name] = str(value).upper() if name in _UPPER else value
        elif key == "ssl.endpoint.identification.algorithm":
            out["ssl_check_hostname"] = str(value).lower() != "none"
    return out


def make_consumer(kafka: KafkaConfig, topics: list[str]) -> Consumer:
    """The configured library's consumer, subscribed to ``topics``."""
    if kafka.library == "confluent":
        from driftwatch.sources.confluent import ConfluentSource  # ImportError names the extra

        return ConfluentSource(
            kafka.bootstrap_servers,
            kafka.group_id,
            topics,
            kafka.client,
            kafka.max_poll_records or CONFLUENT_POLL_RECORDS,
            kafka.max_event_bytes,
            with_headers=kafka.repartitions,
        )
    from driftwatch.sources.kafka import KafkaSource

    return KafkaSource(
        kafka.bootstrap_servers,
        kafka.group_id,
        topics,
        kafka.client,
        kafka.max_poll_records or KAFKA_PYTHON_POLL_RECORDS,
        kafka.max_event_bytes,
        with_headers=kafka.repartitions,
    )
