"""KServe payload logs as CloudEvents: parse (Kafka binary/structured, HTTP), model_of,
request_rows, response_rows, pair_id. The payloads are shaped as KServe's logger, its V1
protocol and the Open Inference Protocol (V2) write them."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwatch.errors import InvalidEvent
from driftwatch.events import INVALID_REASONS, Decoder, ModelSchema
from driftwatch.events import cloudevents as ce
from driftwatch.events.cloudevents import (
    KSERVE_REQUEST,
    KSERVE_RESPONSE,
    MAX_CE_ID_LENGTH,
    MAX_ROWS,
    NEW_REASONS,
    model_of,
    pair_id,
    parse,
    parse_http,
    request_rows,
    response_rows,
)
from driftwatch.events.decode import MAX_ID_LENGTH

REASONS = set(INVALID_REASONS) | set(NEW_REASONS)
IRIS_ORDER = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS = ModelSchema("sklearn-iris", "classification", dict.fromkeys(IRIS_ORDER, "numerical"))
CREDIT_ORDER = ["income", "age", "region"]
CREDIT = ModelSchema(
    "credit-default",
    "classification",
    {"income": "numerical", "age": "numerical", "region": "categorical"},
)
PRICE = ModelSchema("house-price", "regression", {"sqft": "numerical", "city": "categorical"})
CE_ID = "0009174a-24a8-4603-b098-09c8799950e9"
T_REQUEST = "2021-04-10T00:23:26.0789529Z"  # KServe's Go clock: 7 and 9 fraction digits
T_RESPONSE = "2021-04-10T00:23:26.080736102Z"
T0 = 1618014206.0

IRIS_V1_REQUEST = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
IRIS_V1_RESPONSE = {"predictions": [1, 1]}
IRIS_V2_REQUEST = {
    "id": "823248cc-d770-4a51-9606-16803395569c",
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]],
        }
    ],
}
IRIS_V2_RESPONSE = {
    "model_name": "sklearn-iris",
    "model_version": "v1.0.0",
    "id": "823248cc-d770-4a51-9606-16803395569c",
    "parameters": None,
    "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT64", "data": [1, 1]}],
}
CREDIT_V2_REQUEST: dict[str, Any] = {
    "id": "r-7",
    "parameters": {"content_type": "pd"},
    "inputs": [
        {"name": "income", "shape": [3], "datatype": "FP64", "data": [52000.0, 31000.5, None]},
        {"name": "age", "shape": [3, 1], "datatype": "INT64", "data": [[41], [29], [63]]},
        {"name": "region", "shape": [3], "datatype": "BYTES", "data": ["north", "south", "east"]},
        {"name": "customer_id", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]},
    ],
}
CREDIT_V2_RESPONSE = {
    "model_name": "credit-default",
    "model_version": "2026-11-01",
    "id": "r-7",
    "outputs": [
        {"name": "predict", "shape": [3], "datatype": "INT64", "data": [1, 0, 0]},
        {
            "name": "predict_proba",
            "shape": [3, 2],
            "datatype": "FP64",
            "data": [0.17, 0.83, 0.9, 0.1, 0.55, 0.45],
        },
    ],
}


def kafka_headers(
    kind: str = "request", *, ce_id: str = CE_ID, service: str = "sklearn-iris", **extra: str
) -> list[tuple[str, bytes]]:
    """The headers Knative's KafkaSink writes for a KServe logger event (binary mode)."""
    attrs = {
        "specversion": "1.0",
        "id": ce_id,
        "source": "http://localhost:9081/",
        "type": KSERVE_REQUEST if kind == "request" else KSERVE_RESPONSE,
        "time": T_REQUEST if kind == "request" else T_RESPONSE,
        "inferenceservicename": service,
        "namespace": "default",
        "component": "predictor",
        "endpoint": "",
        "traceparent": "00-90bdf848647d50283394155d2df58f19-84dacdfdf07cadfc-00",
        **extra,
    }
    headers = [(f"ce_{k}", v.encode()) for k, v in attrs.items()]
    return [*headers, ("content-type", b"application/json")]


def without(headers: list[tuple[str, bytes]], name: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in headers if k != name]


def structured(kind: str = "request", data: Any = None, **over: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": CE_ID,
        "source": "http://localhost:9081/",
        "type": KSERVE_REQUEST if kind == "request" else KSERVE_RESPONSE,
        "time": T_REQUEST,
        "datacontenttype": "application/json",
        "inferenceservicename": "credit-default",
        "namespace": "risk",
        "endpoint": "canary",
        "data": data if data is not None else IRIS_V1_REQUEST,
    }
    event.update(over)
    return {k: v for k, v in event.items() if v is not ...}


CE_JSON = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def reason_of(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        fn(*args, **kwargs)
    return info.value.reason


# -- parse: binary mode ---------------------------------------------------------------------------


def test_binary_kserve_request():
    event = parse(kafka_headers(), orjson.dumps(IRIS_V1_REQUEST), max_bytes=10_000)
    assert event.kind == "request"
    assert (event.id, event.type, event.source) == (CE_ID, KSERVE_REQUEST, "http://localhost:9081/")
    assert event.inference_service == "sklearn-iris"
    assert event.endpoint is None  # KServe sends an empty endpoint
    assert (event.namespace, event.component) == ("default", "predictor")
    assert event.time == pytest.approx(T0 + 0.078952)
    assert event.data == IRIS_V1_REQUEST


def test_binary_kserve_response_with_nanoseconds():
    event = parse(kafka_headers("response"), orjson.dumps(IRIS_V1_RESPONSE), max_bytes=10_000)
    assert event.kind == "response"
    assert event.time == pytest.approx(T0 + 0.080736)
    assert event.data == IRIS_V1_RESPONSE


def test_header_names_are_case_insensitive_and_both_prefixes_accepted():
    base = kafka_headers()
    upper = [(k.upper(), v) for k, v in base]
    http_style = [("Ce-" + k[3:].capitalize() if k.startswith("ce_") else k, v) for k, v in base]
    mixed = [(k.replace("ce_", "Ce_"), v) for k, v in base]
    value = orjson.dumps(IRIS_V1_REQUEST)
    expected = parse(base, value, max_bytes=10_000)
    for headers in (upper, http_style, mixed):
        assert parse(headers, value, max_bytes=10_000) == expected


def test_repeated_header_last_wins_and_none_values_are_absent():
    headers = [*kafka_headers(), ("ce_inferenceservicename", b"other"), ("ce_namespace", None)]
    event = parse(headers, orjson.dumps(IRIS_V1_REQUEST), max_bytes=10_000)
    assert event.inference_service == "other"
    assert event.namespace == "default"


def test_any_inference_type_is_accepted():
    headers = kafka_headers(type="com.acme.serving.inference.response")
    event = parse(headers, orjson.dumps(IRIS_V1_RESPONSE), max_bytes=10_000)
    assert event.kind == "response"


def test_binary_data_is_json_whatever_the_content_type():
    # curl -d sends application/x-www-form-urlencoded, and KServe passes it on
    headers = [*without(kafka_headers(), "content-type"), ("content-type", b"text/plain")]
    event = parse(headers, orjson.dumps(IRIS_V1_REQUEST), max_bytes=10_000)
    assert event.data == IRIS_V1_REQUEST


def test_binary_value_may_be_bytearray_or_memoryview():
    value = orjson.dumps(IRIS_V1_REQUEST)
    for v in (bytearray(value), memoryview(value)):
        assert parse(kafka_headers(), v, max_bytes=10_000).data == IRIS_V1_REQUEST  # type: ignore[arg-type]


def test_time_is_optional_and_not_range_checked():
    headers = without(kafka_headers(), "ce_time")
    assert parse(headers, orjson.dumps(IRIS_V1_REQUEST), max_bytes=10_000).time is None
    headers = kafka_headers(time="1999-01-01T00:00:00+02:00")
    event = parse(headers, orjson.dumps(IRIS_V1_REQUEST), max_bytes=10_000)
    assert event.time == 915141600.0


# -- parse: structured mode -----------------------------------------------------------------------


def test_structured_with_content_type():
    raw = orjson.dumps(structured())
    event = parse(CE_JSON, raw, max_bytes=10_000)
    assert (event.id, event.kind, event.inference_service) == (CE_ID, "request", "credit-default")
    assert (event.endpoint, event.namespace, event.component) == ("canary", "risk", None)
    assert event.data == IRIS_V1_REQUEST
    assert event.time == pytest.approx(T0 + 0.078952)


def test_structured_content_type_is_case_insensitive_and_headers_may_repeat_attributes():
    headers = [("Content-Type", b"Application/CloudEvents+JSON"), *kafka_headers()[:4]]
    event = parse(headers, orjson.dumps(structured()), max_bytes=10_000)
    assert event.inference_service == "credit-default"  # the JSON's, not a header's


def test_structured_without_any_header():
    raw = orjson.dumps(structured())
    assert parse(None, raw, max_bytes=10_000) == parse(CE_JSON, raw, max_bytes=10_000)
    assert parse([], raw, max_bytes=10_000).id == CE_ID


def test_structured_data_base64():
    body = base64.b64encode(orjson.dumps(CREDIT_V2_REQUEST)).decode()
    raw = orjson.dumps(structured(data=..., data_base64=body))
    assert parse(CE_JSON, raw, max_bytes=10_000).data == CREDIT_V2_REQUEST


def test_structured_data_as_json_text():
    raw = orjson.dumps(structured(data=json.dumps(IRIS_V1_RESPONSE), type=KSERVE_RESPONSE))
    event = parse(CE_JSON, raw, max_bytes=10_000)
    assert (event.kind, event.data) == ("response", IRIS_V1_RESPONSE)


def test_structured_byte_order_mark_is_tolerated():
    raw = b"\xef\xbb\xbf" + orjson.dumps(structured())
    assert parse(CE_JSON, raw, max_bytes=10_000).id == CE_ID


# -- parse_http -----------------------------------------------------------------------------------


def test_http_binary_as_kserve_sends_it():
    headers = {
        "Ce-Specversion": "1.0",
        "Ce-Id": CE_ID,
        "Ce-Source": "http://localhost:9081/",
        "Ce-Type": KSERVE_RESPONSE,
        "Ce-Time": T_RESPONSE,
        "Ce-Inferenceservicename": "sklearn-iris",
        "Ce-Namespace": "default",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "",
        "Content-Type": "application/json",
    }
    event = parse_http(headers, orjson.dumps(IRIS_V1_RESPONSE), max_bytes=10_000)
    assert (event.id, event.kind, event.inference_service) == (CE_ID, "response", "sklearn-iris")
    assert event.data == IRIS_V1_RESPONSE


def test_http_header_values_are_percent_decoded_and_unquoted():
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "a%20b%E2%82%AC",
        "ce-source": '"http://x/ \\"q\\""',
        "ce-type": KSERVE_REQUEST,
        "ce-inferenceservicename": "credit%2Ddefault",
    }
    event = parse_http(headers, orjson.dumps(IRIS_V1_REQUEST), max_bytes=10_000)
    assert event.id == "a b\u20ac"
    assert event.source == 'http://x/ "q"'
    assert event.inference_service == "credit-default"
    bad = {**headers, "ce-id": "%C0%A0"}  # an overlong UTF-8 encoding must be rejected
    assert reason_of(parse_http, bad, orjson.dumps(IRIS_V1_REQUEST), max_bytes=10_000) == (
        "invalid_type"
    )


def test_http_structured():
    headers = {"content-type": "application/cloudevents+json"}
    event = parse_http(headers, orjson.dumps(structured()), max_bytes=10_000)
    assert event.inference_service == "credit-default"


# -- parse: invalid records -----------------------------------------------------------------------

GOOD = orjson.dumps(IRIS_V1_REQUEST)


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        (kafka_headers(specversion="0.3"), GOOD, "invalid_version"),
        (kafka_headers(specversion="2.0"), GOOD, "invalid_version"),
        (without(kafka_headers(), "ce_id"), GOOD, "missing_field"),
        (kafka_headers(id=""), GOOD, "missing_field"),
        (without(kafka_headers(), "ce_specversion"), GOOD, "missing_field"),
        (without(kafka_headers(), "ce_source"), GOOD, "missing_field"),
        (without(kafka_headers(), "ce_type"), GOOD, "missing_field"),
        (kafka_headers(type="dev.knative.sources.ping"), GOOD, "not_inference_event"),
        (
            kafka_headers(type="org.kubeflow.serving.inference.requests"),
            GOOD,
            "not_inference_event",
        ),
        (kafka_headers(), b'{"instances": [[1, 2', "invalid_json"),
        (kafka_headers(), b"\xff\xfe{}", "invalid_json"),
        (kafka_headers(), b'{"instances": [[NaN, 1, 2, 3]]}', "non_finite"),
        (kafka_headers(), b'{"instances": [[1e400, 1, 2, 3]]}', "non_finite"),
        (kafka_headers(), b"[1, 2]", "not_an_object"),
        (kafka_headers(), b'"text"', "not_an_object"),
        (kafka_headers(), None, "missing_field"),
        (kafka_headers(), b"", "missing_field"),
        (kafka_headers(), b" " * 10_001, "too_large"),
        (kafka_headers(time="yesterday"), GOOD, "invalid_timestamp"),
        (kafka_headers(time="1618014206"), GOOD, "invalid_timestamp"),
        (kafka_headers(ce_id="x" * (MAX_CE_ID_LENGTH + 1)), GOOD, "invalid_id"),
        (kafka_headers(source="s" * 5000), GOOD, "too_large"),
        (kafka_headers(inferenceservicename="n" * 5000), GOOD, "too_large"),
        ([*without(kafka_headers(), "ce_id"), ("ce_id", b"\xff\xfe")], GOOD, "invalid_type"),
        (CE_JSON, b"{not json", "invalid_json"),
        (CE_JSON, None, "invalid_json"),
        (CE_JSON, b"[]", "not_an_object"),
        (CE_JSON, orjson.dumps({"id": "x", "data": {}}), "missing_field"),
        (None, orjson.dumps({"model": "m", "id": "x"}), "missing_field"),  # not a CloudEvent
        (CE_JSON, orjson.dumps(structured(specversion="0.3")), "invalid_version"),
        (CE_JSON, orjson.dumps(structured(specversion=1.0)), "invalid_type"),
        (CE_JSON, orjson.dumps(structured(id=...)), "missing_field"),
        (CE_JSON, orjson.dumps(structured(id=17)), "invalid_type"),
        (CE_JSON, orjson.dumps(structured(type="com.example.someevent")), "not_inference_event"),
        (CE_JSON, orjson.dumps(structured(time=1618014206)), "invalid_type"),
        (CE_JSON, orjson.dumps(structured(inferenceservicename=["a"])), "invalid_type"),
        (CE_JSON, orjson.dumps(structured(data=...)), "missing_field"),
        (CE_JSON, orjson.dumps(structured(data=[1, 2])), "not_an_object"),
        (CE_JSON, orjson.dumps(structured(data="not json")), "invalid_json"),
        (CE_JSON, orjson.dumps(structured(data_base64="e30=")), "invalid_type"),  # and data
        (CE_JSON, orjson.dumps(structured(data=..., data_base64="%%%")), "invalid_type"),
        (CE_JSON, orjson.dumps(structured(data=..., data_base64=5)), "invalid_type"),
        (CE_JSON, orjson.dumps(structured(data=..., data_base64="")), "missing_field"),
        (CE_JSON, orjson.dumps(structured(data=..., data_base64="W10=")), "not_an_object"),
    ],
)
def test_invalid_records(headers, value, reason):
    assert reason_of(parse, headers, value, max_bytes=10_000) == reason


def test_too_large_is_checked_before_parsing():
    value = orjson.dumps(IRIS_V1_REQUEST)
    assert reason_of(parse, kafka_headers(), value, max_bytes=len(value) - 1) == "too_large"
    assert parse(kafka_headers(), value, max_bytes=len(value)).data == IRIS_V1_REQUEST


def test_not_bytes():
    assert reason_of(parse, kafka_headers(), "text", max_bytes=100) == "invalid_json"


def test_a_bug_costs_one_record(monkeypatch):
    def boom(raw: bytes) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(ce, "_loads", boom)
    for fn, args in ((parse, (kafka_headers(), GOOD)), (parse_http, ({}, GOOD))):
        with pytest.raises(InvalidEvent) as info:
            fn(*args, max_bytes=10_000)
        assert info.value.reason == "internal_error" and "RuntimeError" in info.value.detail
    monkeypatch.setattr(ce, "_columns", boom)
    assert reason_of(request_rows, IRIS_V1_REQUEST, IRIS, IRIS_ORDER) == "internal_error"
    monkeypatch.setattr(ce, "check_version", boom)
    assert reason_of(response_rows, IRIS_V2_RESPONSE, "classification") == "internal_error"


# -- model_of -------------------------------------------------------------------------------------


def test_model_of_binary_reads_only_the_header():
    assert model_of(kafka_headers(), b"\xff not json at all") == "sklearn-iris"
    assert model_of([(k.upper(), v) for k, v in kafka_headers()], None) == "sklearn-iris"
    assert model_of(without(kafka_headers(), "ce_inferenceservicename"), GOOD) is None
    assert model_of(kafka_headers(inferenceservicename=""), GOOD) is None


def test_model_of_structured():
    raw = orjson.dumps(structured())
    assert model_of(CE_JSON, raw) == "credit-default"
    assert model_of(None, raw) == "credit-default"
    assert model_of(None, b"\xef\xbb\xbf" + raw) == "credit-default"
    assert model_of(CE_JSON, raw, max_bytes=len(raw) - 1) is None
    assert model_of(CE_JSON, orjson.dumps(structured(inferenceservicename=...))) is None


@pytest.mark.parametrize(
    "value",
    [None, b"", b"{", b"[]", b'{"inferenceservicename": 5}', b'{"inferenceservicename": ""}'],
)
def test_model_of_never_raises(value):
    assert model_of(CE_JSON, value) is None
    assert model_of([("ce_inferenceservicename", b"\xff")], value) is None


# -- request_rows ---------------------------------------------------------------------------------

IRIS_ROWS = [
    {"sepal_length": 6.8, "sepal_width": 2.8, "petal_length": 4.8, "petal_width": 1.4},
    {"sepal_length": 6.0, "sepal_width": 3.4, "petal_length": 4.5, "petal_width": 1.6},
]


def test_v1_positional_instances():
    assert request_rows(IRIS_V1_REQUEST, IRIS, IRIS_ORDER) == IRIS_ROWS


def test_v1_positional_order_decides_names():
    rows = request_rows({"instances": [[1.0, 2.0, 3.0, 4.0]]}, IRIS, list(reversed(IRIS_ORDER)))
    assert rows == [
        {"sepal_length": 4.0, "sepal_width": 3.0, "petal_length": 2.0, "petal_width": 1.0}
    ]


def test_v1_feature_order_may_name_unmonitored_inputs():
    rows = request_rows(
        {"instances": [[52000, "x-17", 41, "north"]]}, CREDIT, ["income", "zip", "age", "region"]
    )
    assert rows == [{"income": 52000.0, "age": 41.0, "region": "north"}]


def test_v1_object_instances_by_name():
    data = {
        "instances": [
            {"income": 52000, "age": 41, "region": "north", "customer": "c-1"},
            {"income": 31000.5, "region": 3},
            {"income": None, "age": 29, "region": True},
        ]
    }
    assert request_rows(data, CREDIT, None) == [
        {"income": 52000.0, "age": 41.0, "region": "north"},
        {"income": 31000.5, "age": None, "region": "3"},
        {"income": None, "age": 29.0, "region": "true"},
    ]


def test_rows_match_the_decoder_on_the_same_features():
    instances = [
        {"income": 52000, "age": 41, "region": "north"},
        {"income": 1e6, "age": None, "region": 2.0},
        {"region": False},
    ]
    dec = Decoder({"credit-default": CREDIT}, clock=lambda: 1_795_392_000.0)
    rows = request_rows({"instances": instances}, CREDIT, CREDIT_ORDER)
    for inst, row in zip(instances, rows, strict=True):
        raw = orjson.dumps(
            {"model": "credit-default", "id": "x", "features": inst, "prediction": 1}
        )
        assert dec.prediction(raw, 1_795_000_000.0).features == row


def test_segment_columns_are_read_too():
    schema = ModelSchema("m", "classification", {"income": "numerical"}, segments=("tier",))
    rows = request_rows({"instances": [[1.0, "gold"], {"income": 2.0}]}, schema, ["income", "tier"])
    assert rows == [{"income": 1.0, "tier": "gold"}, {"income": 2.0, "tier": None}]


def test_v1_scalar_instances_of_a_one_feature_model():
    schema = ModelSchema("m", "regression", {"x": "numerical"})
    assert request_rows({"instances": [1, 2.5]}, schema, ["x"]) == [{"x": 1.0}, {"x": 2.5}]


def test_v1_inputs_spellings():
    assert request_rows({"inputs": IRIS_V1_REQUEST["instances"]}, IRIS, IRIS_ORDER) == IRIS_ROWS
    columnar = {"inputs": {"income": [1.0, 2.0], "region": ["a", None], "other": [0, 0]}}
    assert request_rows(columnar, CREDIT, None) == [
        {"income": 1.0, "age": None, "region": "a"},
        {"income": 2.0, "age": None, "region": None},
    ]


def test_empty_batches():
    assert request_rows({"instances": []}, IRIS, IRIS_ORDER) == []
    assert request_rows({"inputs": []}, IRIS, IRIS_ORDER) == []


def test_v2_one_matrix_nested_or_flat():
    assert request_rows(IRIS_V2_REQUEST, IRIS, IRIS_ORDER) == IRIS_ROWS
    flat = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP64",
                "data": [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6],
            }
        ]
    }
    assert request_rows(flat, IRIS, IRIS_ORDER) == IRIS_ROWS
    one_row = {"inputs": [{**flat["inputs"][0], "shape": [4], "data": [6.8, 2.8, 4.8, 1.4]}]}
    assert request_rows(one_row, IRIS, IRIS_ORDER) == IRIS_ROWS[:1]


def test_v2_one_tensor_per_feature():
    rows = request_rows(CREDIT_V2_REQUEST, CREDIT, CREDIT_ORDER)
    assert rows == [
        {"income": 52000.0, "age": 41.0, "region": "north"},
        {"income": 31000.5, "age": 29.0, "region": "south"},
        {"income": None, "age": 63.0, "region": "east"},
    ]
    # a feature without its tensor is missing; positional order is not needed
    inputs = [t for t in CREDIT_V2_REQUEST["inputs"] if t["name"] != "age"]
    rows = request_rows({"inputs": inputs}, CREDIT, None)
    assert [r["age"] for r in rows] == [None, None, None]


def test_v2_single_feature_tensor():
    schema = ModelSchema("m", "regression", {"x": "numerical"})
    data = {"inputs": [{"name": "x", "shape": [3, 1], "datatype": "UINT8", "data": [1, 2, 3]}]}
    assert request_rows(data, schema, None) == [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]
    data = {"inputs": [{"name": "input-0", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}
    assert request_rows(data, schema, ["x"]) == [{"x": 1.0}, {"x": 2.0}]


def test_v2_bool_tensor_for_a_categorical_feature():
    schema = ModelSchema("m", "classification", {"member": "categorical"})
    data = {"inputs": [{"name": "member", "shape": [2], "datatype": "BOOL", "data": [True, False]}]}
    assert request_rows(data, schema, None) == [{"member": "true"}, {"member": "false"}]


def tensor(name="input-0", shape=(2, 4), datatype="FP32", data=None):
    return {
        "name": name,
        "shape": list(shape),
        "datatype": datatype,
        "data": data if data is not None else [0.5] * math.prod(shape),
    }


@pytest.mark.parametrize(
    ("data", "schema", "order", "reason"),
    [
        ([1, 2], IRIS, IRIS_ORDER, "not_an_object"),
        ({"predictions": [1]}, IRIS, IRIS_ORDER, "missing_field"),
        ({"instances": {"a": 1}}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"inputs": "abc"}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"instances": [[1, 2, 3]]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"instances": [[1, 2, 3, 4, 5]]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"instances": [[1, 2, 3, 4]]}, IRIS, None, "invalid_type"),  # no feature_order
        ({"instances": [1.0]}, IRIS, IRIS_ORDER, "invalid_type"),  # scalar, 4 features
        ({"instances": [[1, 2, "x", 4]]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"instances": [[1, 2, True, 4]]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"instances": [[1, 2, float("nan"), 4]]}, IRIS, IRIS_ORDER, "non_finite"),
        ({"instances": [[1, 2, float("inf"), 4]]}, IRIS, IRIS_ORDER, "non_finite"),
        ({"instances": [[1, 2, 10**400, 4]]}, IRIS, IRIS_ORDER, "non_finite"),
        ({"instances": [{"region": {"a": 1}}]}, CREDIT, None, "invalid_type"),
        ({"instances": [{"region": float("nan")}]}, CREDIT, None, "non_finite"),
        ({"instances": [[0, 0, 0, 0]] * (MAX_ROWS + 1)}, IRIS, IRIS_ORDER, "too_large"),
        ({"inputs": {"income": [1], "age": [1, 2]}}, CREDIT, None, "invalid_shape"),
        ({"inputs": {"income": 1}}, CREDIT, None, "invalid_type"),
        ({"inputs": {"other": [1]}}, CREDIT, None, "missing_field"),
        ({"inputs": [tensor(shape=(2, 4), data=[1.0] * 7)]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"inputs": [tensor(shape=(2, 4), data=[1.0] * 9)]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"inputs": [tensor(shape=(2, 3))]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"inputs": [tensor(shape=(3,))]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"inputs": [tensor(shape=(2, 2, 1))]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"inputs": [tensor(shape=(2, -4), data=[1] * 8)]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"inputs": [tensor(shape=(2, 4))]}, IRIS, None, "invalid_type"),
        ({"inputs": [tensor(datatype="FP128")]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"inputs": [tensor(datatype="INT32")]}, IRIS, IRIS_ORDER, "invalid_type"),  # floats
        ({"inputs": [tensor(datatype="BYTES")]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"inputs": [tensor(datatype="BOOL")]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"inputs": [{**tensor(), "data": None}]}, IRIS, IRIS_ORDER, "missing_field"),
        ({"inputs": [{**tensor(), "data": {"a": 1}}]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"inputs": [{**tensor(), "name": None}]}, IRIS, IRIS_ORDER, "missing_field"),
        ({"inputs": [{**tensor(), "shape": "2x4"}]}, IRIS, IRIS_ORDER, "invalid_shape"),
        ({"inputs": [{**tensor(), "datatype": 3}]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"inputs": [tensor(), "x"]}, IRIS, IRIS_ORDER, "invalid_type"),
        ({"inputs": [tensor(), tensor()]}, IRIS, IRIS_ORDER, "invalid_type"),  # same name
        ({"inputs": [tensor("a"), tensor("b")]}, IRIS, IRIS_ORDER, "missing_field"),
        (
            {"inputs": [tensor("income", (2,)), tensor("age", (3,))]},
            CREDIT,
            None,
            "invalid_shape",
        ),
        ({"inputs": [tensor("income", (2, 2))]}, CREDIT, None, "invalid_shape"),
        (
            {"inputs": [tensor("income", (2,), "BYTES", ["1", "2"])]},
            CREDIT,
            None,
            "invalid_type",
        ),
        (
            {"inputs": [tensor(shape=(MAX_ROWS + 1, 1), data=[1.0] * (MAX_ROWS + 1))]},
            ModelSchema("m", "regression", {"x": "numerical"}),
            ["x"],
            "too_large",
        ),
        ({"inputs": [tensor(shape=(10**6, 10**6), data=[1])]}, IRIS, IRIS_ORDER, "too_large"),
    ],
)
def test_invalid_requests(data, schema, order, reason):
    assert reason_of(request_rows, data, schema, order) == reason


# -- response_rows --------------------------------------------------------------------------------


def test_v1_scalar_predictions():
    assert response_rows(IRIS_V1_RESPONSE, "classification") == ([("1", None), ("1", None)], None)
    assert response_rows({"predictions": ["setosa", True]}, "classification") == (
        [("setosa", None), ("true", None)],
        None,
    )
    assert response_rows({"predictions": [250000, 1.5e5]}, "regression") == (
        [(250000.0, None), (150000.0, None)],
        None,
    )


def test_v1_probability_lists():
    preds, version = response_rows({"predictions": [[0.17, 0.83], [0.9, 0.1]]}, "classification")
    assert preds == [("1", 0.83), ("0", 0.1)]
    assert version is None
    preds, _ = response_rows({"predictions": [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]]}, "classification")
    assert preds == [("1", None), ("0", None)]  # argmax; a tie takes the first
    preds, _ = response_rows({"predictions": [[1], [0]]}, "classification")
    assert preds == [("1", None), ("0", None)]  # a one-value list is the value
    preds, _ = response_rows({"predictions": [[12.5]]}, "regression")
    assert preds == [(12.5, None)]


def test_v2_predictions_and_probabilities():
    preds, version = response_rows(CREDIT_V2_RESPONSE, "classification")
    assert preds == [("1", 0.83), ("0", 0.1), ("0", 0.45)]
    assert version == "2026-11-01"
    preds, version = response_rows(IRIS_V2_RESPONSE, "classification")
    assert (preds, version) == ([("1", None), ("1", None)], "v1.0.0")


def test_v2_probabilities_first_or_alone():
    proba = CREDIT_V2_RESPONSE["outputs"][1]
    both = {"outputs": [proba, CREDIT_V2_RESPONSE["outputs"][0]]}
    assert response_rows(both, "classification")[0] == [("1", 0.83), ("0", 0.1), ("0", 0.45)]
    alone = {"outputs": [proba]}
    assert response_rows(alone, "classification")[0] == [("1", 0.83), ("0", 0.1), ("0", 0.45)]
    onnx = {
        "outputs": [
            {"name": "output_label", "shape": [2], "datatype": "BYTES", "data": ["yes", "no"]},
            {"name": "output_probability", "shape": [2, 1], "datatype": "FP32", "data": [0.7, 0.2]},
        ]
    }
    assert response_rows(onnx, "classification")[0] == [("yes", 0.7), ("no", 0.2)]
    scores = {
        "outputs": [{"name": "scores", "shape": [3], "datatype": "FP32", "data": [0.7, 0.5, 0.2]}]
    }
    assert response_rows(scores, "classification")[0] == [("1", 0.7), ("1", 0.5), ("0", 0.2)]
    three = {"outputs": [tensor("probabilities", (1, 3), data=[0.2, 0.3, 0.5])]}
    assert response_rows(three, "classification")[0] == [("2", None)]


def test_v2_matrix_predictions_are_probabilities():
    out = {"outputs": [tensor("output-0", (2, 2), data=[0.3, 0.7, 0.8, 0.2])]}
    assert response_rows(out, "classification")[0] == [("1", 0.7), ("0", 0.2)]


def test_v2_regression_uses_the_first_output():
    out = {
        "outputs": [
            tensor("score", (2,), "FP64", [310000.0, 295000.5]),
            tensor("other", (2,), "FP64", [1.0, 2.0]),
        ]
    }
    assert response_rows(out, "regression") == ([(310000.0, None), (295000.5, None)], None)


def test_model_version_forms():
    for version in (None, ""):
        assert (
            response_rows({**IRIS_V2_RESPONSE, "model_version": version}, "classification")[1]
            is None
        )
    assert response_rows({"predictions": [1], "model_version": "7"}, "classification")[1] == "7"


@pytest.mark.parametrize(
    ("data", "task", "reason"),
    [
        ("x", "classification", "not_an_object"),
        ({"instances": [1]}, "classification", "missing_field"),
        ({"predictions": 1}, "classification", "invalid_type"),
        ({"predictions": [None]}, "classification", "missing_field"),
        ({"predictions": [{"label": 1}]}, "classification", "invalid_type"),
        ({"predictions": [[]]}, "classification", "invalid_shape"),
        ({"predictions": [[0.2, None]]}, "classification", "missing_field"),
        ({"predictions": [[0.2, "x"]]}, "classification", "invalid_type"),
        ({"predictions": [[0.2, float("nan")]]}, "classification", "non_finite"),
        ({"predictions": [[0.2, 0.8]]}, "regression", "invalid_shape"),
        ({"predictions": ["high"]}, "regression", "invalid_type"),
        ({"predictions": [float("inf")]}, "regression", "non_finite"),
        ({"predictions": [1] * (MAX_ROWS + 1)}, "classification", "too_large"),
        ({"predictions": [1], "model_version": 3}, "classification", "invalid_type"),
        ({"predictions": [1], "model_version": "__other__"}, "classification", "invalid_version"),
        ({"predictions": [1], "model_version": "v" * 200}, "classification", "invalid_version"),
        ({"outputs": []}, "classification", "missing_field"),
        ({"outputs": {"a": 1}}, "classification", "invalid_type"),
        ({"outputs": [tensor("p", (2,), "INT64", [1])]}, "classification", "invalid_shape"),
        ({"outputs": [tensor("p", (1, 1, 1), "INT64", [1])]}, "classification", "invalid_shape"),
        ({"outputs": [tensor("p", (1, 0), "INT64", [])]}, "classification", "invalid_shape"),
        ({"outputs": [tensor("p", (2,), "INT64", [1, None])]}, "classification", "missing_field"),
        (
            {"outputs": [tensor("p", (2,), "INT64", [1, 0]), tensor("probabilities", (3, 2))]},
            "classification",
            "invalid_shape",
        ),
        ({"outputs": [tensor("scores", (1,), "FP32", [None])]}, "classification", "missing_field"),
        ({"outputs": [tensor("p", (2, 2), "FP32")]}, "regression", "invalid_shape"),
    ],
)
def test_invalid_responses(data, task, reason):
    assert reason_of(response_rows, data, task) == reason


# -- pair_id --------------------------------------------------------------------------------------


def test_pair_id():
    assert pair_id(CE_ID, 0) == f"{CE_ID}/0"
    assert (
        pair_id("x" * MAX_CE_ID_LENGTH, MAX_ROWS - 1) == "x" * MAX_CE_ID_LENGTH + f"/{MAX_ROWS - 1}"
    )
    assert len(pair_id("x" * MAX_CE_ID_LENGTH, MAX_ROWS - 1)) <= MAX_ID_LENGTH
    assert reason_of(pair_id, "x" * MAX_ID_LENGTH, 0) == "invalid_id"


def test_a_whole_kserve_exchange():
    """Request and response records as KafkaSink writes them -> N prediction rows."""
    request = parse(kafka_headers(), orjson.dumps(IRIS_V2_REQUEST), max_bytes=10_000)
    response = parse(kafka_headers("response"), orjson.dumps(IRIS_V2_RESPONSE), max_bytes=10_000)
    assert request.id == response.id
    rows = request_rows(request.data, IRIS, IRIS_ORDER)
    preds, version = response_rows(response.data, IRIS.task)
    events = [
        (pair_id(request.id, i), row, p) for i, (row, p) in enumerate(zip(rows, preds, strict=True))
    ]
    assert [e[0] for e in events] == [f"{CE_ID}/0", f"{CE_ID}/1"]
    assert events[1][1] == IRIS_ROWS[1] and events[1][2] == ("1", None)
    assert version == "v1.0.0"


# -- totality -------------------------------------------------------------------------------------

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEADER_NAMES = st.sampled_from(
    [
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_inferenceservicename",
        "CE-ID",
        "Ce-Type",
        "content-type",
        "ce_",
        "ce-",
        "other",
    ]
) | st.text(max_size=12)
HEADER_VALUES = (
    st.sampled_from(
        [b"1.0", b"0.3", KSERVE_REQUEST.encode(), KSERVE_RESPONSE.encode(), T_REQUEST.encode()]
    )
    | st.sampled_from([b"application/cloudevents+json", b"application/json", b"", b"\xff"])
    | st.just(b"%C0%A0")
    | st.binary(max_size=40)
    | st.none()
)
KEYS: tuple[str, ...] = (
    "instances",
    "inputs",
    "predictions",
    "outputs",
    "name",
    "shape",
    "datatype",
    "data",
)
KEYS += ("model_version", "income", "age", "region", "specversion", "id", "type", "source")
KEYS += ("data_base64", "time")
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(KEYS) | st.text(max_size=5),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


def _dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits
        return json.dumps(obj).encode()


VALUES = st.none() | st.binary(max_size=200) | JSON.map(_dumps)


def check_total(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc
        assert exc.reason != "internal_error", exc
        assert len(exc.detail) <= 200


@SETTINGS
@given(
    headers=st.none() | st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8), value=VALUES
)
def test_parse_is_total(headers, value):
    check_total(parse, headers, value, max_bytes=150)
    assert model_of(headers, value) is None or isinstance(model_of(headers, value), str)


@SETTINGS
@given(
    headers=st.dictionaries(HEADER_NAMES, st.text(max_size=20), max_size=8),
    body=VALUES.map(lambda v: v or b""),
)
def test_parse_http_is_total(headers, body):
    check_total(parse_http, headers, body, max_bytes=150)


@SETTINGS
@given(
    value=JSON,
    kind=st.sampled_from([KSERVE_REQUEST, KSERVE_RESPONSE]),
)
def test_structured_events_with_any_data_are_total(value, kind):
    event = structured(data=value, type=kind)
    check_total(parse, CE_JSON, _dumps(event), max_bytes=10_000)


@SETTINGS
@given(data=JSON, order=st.none() | st.sampled_from([CREDIT_ORDER, ["income"], []]))
def test_rows_are_total(data, order):
    check_total(request_rows, data, CREDIT, order)
    check_total(response_rows, data, "classification")
    check_total(response_rows, data, "regression")


@SETTINGS
@given(
    n=st.integers(0, 6),
    values=st.lists(
        st.none() | st.floats(-1e6, 1e6) | st.integers(-100, 100) | st.text(max_size=3),
        min_size=18,
        max_size=18,
    ),
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    datatype=st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "UINT8"]),
)
def test_tensor_shapes_are_total(n, values, shape, datatype):
    t = {"name": "input-0", "shape": shape, "datatype": datatype, "data": values[: n * 3]}
    check_total(request_rows, {"inputs": [t]}, CREDIT, CREDIT_ORDER)
    check_total(response_rows, {"outputs": [t]}, "classification")
    try:
        rows = request_rows({"inputs": [t]}, CREDIT, CREDIT_ORDER)
    except InvalidEvent:
        return
    assert all(set(r) == {"income", "age", "region"} for r in rows)
    assert math.prod(shape) == len(rows) * 3
