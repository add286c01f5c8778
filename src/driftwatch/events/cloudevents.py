"""KServe payload logs as CloudEvents (CONTRACT section 12): parsing and the rows they carry.

Pure building blocks, no I/O: :func:`parse` (a Kafka record) and :func:`parse_http` (an HTTP
request) turn one CloudEvent into a :class:`CloudEvent`; :func:`model_of` reads only the
inference service name, to route a record cheaply; :func:`request_rows` and
:func:`response_rows` turn a request's and a response's ``data`` into per-instance feature
rows and (prediction, score) pairs; :func:`pair_id` names instance ``i`` of a batch.

Like :class:`driftwatch.events.decode.Decoder`, :func:`parse`, :func:`parse_http`,
:func:`request_rows` and :func:`response_rows` are total: on any input they return or raise
:class:`~driftwatch.errors.InvalidEvent` with one reason from
:data:`driftwatch.events.decode.INVALID_REASONS` or :data:`NEW_REASONS`; nothing else
escapes (a bug costs one record, as ``internal_error``). :func:`model_of` never raises.

The formats, as read in (these pages are what the rules below follow):

- KServe payload logger (it sends each request and response as a CloudEvent, in HTTP binary
  mode, type ``org.kubeflow.serving.inference.request`` / ``.response``, both with the
  request's id as ``id``, extensions ``inferenceservicename``, ``namespace``, ``component``,
  ``endpoint`` (often empty), ``metadata``; ``time`` set by the sender; ``datacontenttype``
  is the client's content type, so it is not trusted to say JSON):
  https://kserve.github.io/website/docs/model-serving/predictive-inference/logger/basic-logger,
  https://github.com/kserve/kserve/blob/master/pkg/logger/worker.go,
  https://github.com/kserve/kserve/blob/master/docs/samples/logger/basic/README.md
- KServe V1 protocol (``{"instances": [...]}`` or ``{"inputs": ...}`` ->
  ``{"predictions": [...]}``):
  https://kserve.github.io/website/docs/concepts/architecture/data-plane/v1-protocol
- Open Inference Protocol (V2) (``inputs``/``outputs`` tensors ``{name, shape, datatype,
  data}``, data row-major, flat or nested; ``model_version`` in the response):
  https://kserve.github.io/website/0.10/modelserving/data_plane/v2_protocol/ (source:
  https://github.com/kserve/website/blob/main/docs/modelserving/data_plane/v2_protocol.md)
- CloudEvents Kafka protocol binding 1.0 (binary mode: ``ce_`` headers, ``content-type`` is
  ``datacontenttype``, value = data; structured mode: ``content-type`` starting
  ``application/cloudevents``, value = the JSON event):
  https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/kafka-protocol-binding.md
- CloudEvents HTTP protocol binding (``ce-`` headers, case-insensitive names, values
  percent-encoded and possibly double-quoted):
  https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/http-protocol-binding.md
- Knative KafkaSink (writes the events it receives to a topic, binary or structured
  ``contentMode``): https://knative.dev/docs/eventing/sinks/kafka-sink/

Parsing rules (:func:`parse`):

- Header names are case-insensitive; ``ce_`` and ``ce-`` prefixes are both accepted (Kafka
  and HTTP spellings). A header repeated: the last one wins. Header values are UTF-8 (only
  the attributes used are decoded); over HTTP they are also unquoted and percent-decoded.
- Structured mode when ``content-type`` starts with ``application/cloudevents``
  (case-insensitive), or when there is no ``ce_`` header at all (the value must then be a JSON
  object with ``specversion``, else ``missing_field``). Otherwise binary mode.
- ``specversion``, ``id``, ``source``, ``type`` are required (``missing_field``);
  ``specversion`` must be ``1`` or ``1.x`` (``invalid_version``); ``type`` must end in
  ``.inference.request`` or ``.inference.response`` (``not_inference_event``); ``id`` at
  most :data:`MAX_CE_ID_LENGTH` characters (``invalid_id``), so every :func:`pair_id` of it
  fits :data:`~driftwatch.events.decode.MAX_ID_LENGTH`; other attributes at most
  :data:`MAX_ATTRIBUTE_LENGTH` (``too_large``).
- ``time`` (optional) is RFC 3339, parsed by :func:`~driftwatch.events.decode.parse_timestamp`
  (fractions beyond microseconds truncated); the range is not checked here (the caller's
  :meth:`Decoder.check_timestamp <driftwatch.events.decode.Decoder.check_timestamp>`).
  Empty extension values (KServe's ``endpoint``) and an empty ``time`` read as absent.
- The data is always parsed as JSON (whatever ``datacontenttype`` says): binary mode the value;
  structured mode ``data`` (an object, or a string holding JSON text) or ``data_base64``
  (both at once: ``invalid_type``). It must be a JSON object (``not_an_object``); absent or
  empty: ``missing_field`` (``data``). The record is ``too_large`` beyond ``max_bytes``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

import msgspec

from driftwatch.errors import InvalidEvent
from driftwatch.events.decode import (
    MAX_ID_LENGTH,
    _category,
    _clip,
    _internal,
    _loads,
    _number,
    check_version,
    parse_timestamp,
)
from driftwatch.events.schema import FeatureValue, ModelSchema, category_key

#: Reasons this module raises that :data:`driftwatch.events.decode.INVALID_REASONS` lacks.
NOT_INFERENCE_EVENT = "not_inference_event"  # a CloudEvent, but not an inference request/response
INVALID_SHAPE = "invalid_shape"  # rows/tensors whose lengths or shapes disagree
NEW_REASONS = (NOT_INFERENCE_EVENT, INVALID_SHAPE)

#: The KServe payload logger's event types.
KSERVE_REQUEST = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE = "org.kubeflow.serving.inference.response"
#: Most instances one event may carry (a batch of more is ``too_large``).
MAX_ROWS = 10_000
#: Longest CloudEvent ``id``: ``<id>/<i>`` for every ``i < MAX_ROWS`` fits ``MAX_ID_LENGTH``.
MAX_CE_ID_LENGTH = MAX_ID_LENGTH - len(f"/{MAX_ROWS - 1}")
#: Longest other attribute kept (``source``, ``type``, extensions), in characters.
MAX_ATTRIBUTE_LENGTH = 1024
#: Most tensors in a V2 ``inputs``/``outputs`` list.
MAX_TENSORS = 10_000

Kind = Literal["request", "response"]

_STRUCTURED = "application/cloudevents"
_PREFIXES = ("ce_", "ce-")
_REQUEST_SUFFIX = ".inference.request"
_RESPONSE_SUFFIX = ".inference.response"
# RFC 3339 fractions beyond microseconds (KServe's Go time has nanoseconds); Python 3.10's
# fromisoformat takes at most 6 digits.
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(slots=True)
class CloudEvent:
    """One parsed KServe payload-log event. ``data`` is the parsed JSON body (an object)."""

    id: str
    type: str
    source: str
    time: float | None  # epoch seconds (RFC 3339 ``time``), range not checked
    inference_service: str | None  # extension ``inferenceservicename``
    endpoint: str | None  # extension ``endpoint`` (KServe: "" / default / canary)
    data: Any
    kind: Kind
    namespace: str | None = None  # extension ``namespace``
    component: str | None = None  # extension ``component`` (predictor, transformer, ...)


# -- parsing ----------------------------------------------------------------------------------

Headers = Sequence[tuple[str, bytes | str | None]]


def parse(headers: Headers | None, value: bytes | None, *, max_bytes: int) -> CloudEvent:
    """A Kafka record (binary or structured content mode) -> :class:`CloudEvent`."""
    try:
        attrs, content_type = _collect(headers or (), http=False)
        return _event(attrs, content_type, value, max_bytes)
    except InvalidEvent:
        raise
    except Exception as exc:  # by design: nothing else ever escapes
        raise _internal(exc) from None


def parse_http(headers: Mapping[str, str], body: bytes, *, max_bytes: int) -> CloudEvent:
    """An HTTP request (CloudEvents HTTP binding, binary or structured) -> :class:`CloudEvent`.

    ``headers``: the request's headers (any name case); values as the server gives them
    (``str``), percent-decoded here."""
    try:
        attrs, content_type = _collect(headers.items(), http=True)
        return _event(attrs, content_type, body, max_bytes)
    except InvalidEvent:
        raise
    except Exception as exc:  # by design: nothing else ever escapes
        raise _internal(exc) from None


class _Routing(msgspec.Struct):
    inferenceservicename: str | None = None


_ROUTING = msgspec.json.Decoder(_Routing)


def model_of(
    headers: Headers | None, value: bytes | None, *, max_bytes: int | None = None
) -> str | None:
    """The event's ``inferenceservicename``, read cheaply to route the record; None if absent
    or unreadable. Binary mode: the header only (the value is not read). Structured mode: the
    JSON's top-level ``inferenceservicename`` (decoded without building the rest). Never raises;
    :func:`parse` still validates the whole record."""
    try:
        attrs, content_type = _collect(headers or (), http=False)
        if not _is_structured(attrs, content_type):
            raw = attrs.get("inferenceservicename")
            text = None if raw is None else _text(raw, "inferenceservicename")
            return text or None
        if value is None or (max_bytes is not None and len(value) > max_bytes):
            return None
        raw_value = bytes(value)
        if raw_value.startswith(b"\xef\xbb\xbf"):
            raw_value = raw_value[3:]
        name = _ROUTING.decode(raw_value).inferenceservicename
        return name or None
    except Exception:  # routing is best effort: parse() says what is wrong
        return None


def _header_bytes(value: object, http: bool) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        if not http:
            return value.encode("utf-8", "surrogatepass")
        text = value.strip()
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':  # RFC 7230 quoted-string
            text = re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)
        try:
            raw = text.encode("latin-1")  # servers decode header bytes as latin-1
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        return unquote_to_bytes(raw)
    return None


def _collect(
    headers: Iterable[tuple[object, object]], http: bool
) -> tuple[dict[str, bytes], str | None]:
    """CloudEvent attributes from ``ce_``/``ce-`` headers (name -> raw value; the last of a
    repeated header wins) and the ``content-type``."""
    attrs: dict[str, bytes] = {}
    content_type: str | None = None
    for item in headers:
        name, value = item
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).decode("latin-1")
        if not isinstance(name, str):
            continue
        lname = name.strip().lower()
        raw = _header_bytes(value, http)
        if raw is None:
            continue
        if lname == "content-type":
            content_type = raw.decode("latin-1").strip().lower()
        elif lname.startswith(_PREFIXES) and len(lname) > 3:
            attrs[lname[3:]] = raw
    return attrs, content_type


def _is_structured(attrs: Mapping[str, bytes], content_type: str | None) -> bool:
    if content_type is not None and content_type.startswith(_STRUCTURED):
        return True
    return not attrs


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("invalid_type", f"ce_{name}: not UTF-8") from None


_Getter = Callable[[str], str | None]


def _json_getter(obj: Mapping[str, Any]) -> _Getter:
    def get(name: str) -> str | None:
        v = obj.get(name)
        if v is None or isinstance(v, str):
            return v
        raise InvalidEvent("invalid_type", f"{name}: expected a string, got {type(v).__name__}")

    return get


def _header_getter(attrs: Mapping[str, bytes]) -> _Getter:
    def get(name: str) -> str | None:
        raw = attrs.get(name)
        return None if raw is None else _text(raw, name)

    return get


def _structured(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise InvalidEvent("invalid_json", "empty record (tombstone)")
    obj = _loads(value)
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"got a JSON {type(obj).__name__}")
    if "specversion" not in obj:
        raise InvalidEvent("missing_field", "specversion")
    return obj


def _kind(ce_type: str, what: str) -> Kind:
    if ce_type.endswith(_REQUEST_SUFFIX):
        return "request"
    if ce_type.endswith(_RESPONSE_SUFFIX):
        return "response"
    raise InvalidEvent(NOT_INFERENCE_EVENT, _clip(f"{what}: {ce_type!r}"))


def _event(
    attrs: Mapping[str, bytes], content_type: str | None, value: object, max_bytes: int
) -> CloudEvent:
    if value is not None and not isinstance(value, bytes):
        if not isinstance(value, (bytearray, memoryview)):
            raise InvalidEvent("invalid_json", f"expected bytes, got {type(value).__name__}")
        value = bytes(value)
    if value is not None and len(value) > max_bytes:
        raise InvalidEvent("too_large", f"{len(value)} bytes > {max_bytes}")
    obj: dict[str, Any] | None = None
    if _is_structured(attrs, content_type):
        obj = _structured(value)
        get, prefix = _json_getter(obj), ""
    else:
        get, prefix = _header_getter(attrs), "ce_"

    def required(name: str, limit: int = MAX_ATTRIBUTE_LENGTH) -> str:
        v = get(name)
        if not v:
            raise InvalidEvent("missing_field", prefix + name)
        if len(v) > limit:
            reason = "invalid_id" if name == "id" else "too_large"
            raise InvalidEvent(reason, f"{prefix}{name}: {len(v)} characters > {limit}")
        return v

    def optional(name: str) -> str | None:
        return required(name) if get(name) else None

    spec = required("specversion")
    if not (spec == "1" or spec.startswith("1.")):
        raise InvalidEvent("invalid_version", _clip(f"{prefix}specversion: {spec!r}, not 1.x"))
    ident = required("id", MAX_CE_ID_LENGTH)
    source = required("source")
    ce_type = required("type")
    kind = _kind(ce_type, prefix + "type")
    time_text = optional("time")
    seconds = None if time_text is None else parse_timestamp(_FRACTION.sub(r"\1", time_text))
    if obj is not None:
        data = _structured_data(obj)
    elif value:  # binary: the value is the data
        data = _loads(value)
    else:
        raise InvalidEvent("missing_field", "data")
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"data: got a JSON {type(data).__name__}")
    return CloudEvent(
        ident,
        ce_type,
        source,
        seconds,
        optional("inferenceservicename"),
        optional("endpoint"),
        data,
        kind,
        optional("namespace"),
        optional("component"),
    )


def _structured_data(obj: Mapping[str, Any]) -> Any:
    data, b64 = obj.get("data"), obj.get("data_base64")
    if data is not None and b64 is not None:
        raise InvalidEvent("invalid_type", "both data and data_base64")
    if b64 is not None:
        if not isinstance(b64, str):
            raise InvalidEvent(
                "invalid_type", f"data_base64: expected a string, got {type(b64).__name__}"
            )
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEvent("invalid_type", "data_base64: not base64") from None
        if not raw:
            raise InvalidEvent("missing_field", "data")
        return _loads(raw)
    if data is None:
        raise InvalidEvent("missing_field", "data")
    if isinstance(data, str):  # JSON text in a string (a non-JSON datacontenttype)
        if not data:
            raise InvalidEvent("missing_field", "data")
        return _loads(data.encode("utf-8", "surrogatepass"))
    return data


def pair_id(ce_id: str, i: int) -> str:
    """The id of instance ``i`` of the batch in event ``ce_id``: ``<ce_id>/<i>`` (CONTRACT
    section 12); ``invalid_id`` beyond :data:`~driftwatch.events.decode.MAX_ID_LENGTH`."""
    ident = f"{ce_id}/{i}"
    if len(ident) > MAX_ID_LENGTH:
        raise InvalidEvent("invalid_id", f"id: {len(ident)} characters > {MAX_ID_LENGTH}")
    return ident


# -- tensors ----------------------------------------------------------------------------------


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_DATATYPES: dict[str, Callable[[object], bool]] = {
    "BOOL": lambda x: isinstance(x, bool),
    **dict.fromkeys(
        ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"), _is_int
    ),
    **dict.fromkeys(("FP16", "FP32", "FP64"), _is_number),
    **dict.fromkeys(("BYTES", "STRING"), lambda x: isinstance(x, str)),
}


@dataclass(slots=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    values: list[Any]  # flattened, row-major


def _flatten(data: list[Any], limit: int, what: str) -> list[Any]:
    """Nested lists -> their leaves in row-major order (iterative: no recursion limit)."""
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
            if len(out) > limit:
                raise InvalidEvent(INVALID_SHAPE, f"{what}: more values than its shape says")
        else:
            stack.pop()
    return out


def _tensor(obj: object, what: str) -> _Tensor:
    """One V2 tensor, checked: shape x data length agree and values fit the datatype."""
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_type", f"{what}: expected an object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str):
        raise InvalidEvent("missing_field" if name is None else "invalid_type", f"{what}.name")
    what = _clip(f"{what} ({name})", 100)
    shape_raw = obj.get("shape")
    if not isinstance(shape_raw, list) or not all(_is_int(d) and d >= 0 for d in shape_raw):
        raise InvalidEvent(
            "missing_field" if shape_raw is None else INVALID_SHAPE,
            f"{what}.shape: expected a list of non-negative integers",
        )
    size = 1
    for d in shape_raw:
        size *= d
        if size > MAX_ROWS * MAX_ROWS:  # more values than any record can hold
            raise InvalidEvent("too_large", f"{what}.shape: {size} values")
    datatype = obj.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidEvent(
            "missing_field" if datatype is None else "invalid_type", f"{what}.datatype"
        )
    fits = _DATATYPES.get(datatype.upper())
    if fits is None:
        raise InvalidEvent("invalid_type", _clip(f"{what}.datatype: unknown {datatype!r}"))
    data = obj.get("data")
    if data is None:
        raise InvalidEvent("missing_field", f"{what}.data")
    if isinstance(data, list):
        values = _flatten(data, size, what)
    elif isinstance(data, (str, int, float, bool)):  # a lone scalar
        values = [data]
    else:
        raise InvalidEvent("invalid_type", f"{what}.data: expected a list")
    if len(values) != size:
        raise InvalidEvent(
            INVALID_SHAPE, f"{what}: shape {shape_raw} holds {size} values, data has {len(values)}"
        )
    for x in values:
        if x is not None and not fits(x):
            raise InvalidEvent(
                "invalid_type", f"{what}: a {datatype} tensor holds a {type(x).__name__}"
            )
    return _Tensor(name, tuple(shape_raw), values)


def _tensors(raw: object, what: str) -> list[_Tensor]:
    if not isinstance(raw, list):
        raise InvalidEvent("invalid_type", f"{what}: expected a list, got {type(raw).__name__}")
    if len(raw) > MAX_TENSORS:
        raise InvalidEvent("too_large", f"{what}: {len(raw)} tensors")
    tensors = [_tensor(t, f"{what}[{k}]") for k, t in enumerate(raw)]
    if len({t.name for t in tensors}) != len(tensors):
        raise InvalidEvent("invalid_type", f"{what}: two tensors share a name")
    return tensors


def _check_rows(n: int, what: str) -> None:
    if n > MAX_ROWS:
        raise InvalidEvent("too_large", f"{what}: {n} instances > {MAX_ROWS}")


# -- requests -> feature rows -----------------------------------------------------------------

# (column, numerical?, detail): every schema feature, then segment columns not features
_Column = tuple[str, bool, str]
_Row = dict[str, FeatureValue]


def _columns(schema: ModelSchema) -> list[_Column]:
    cols = [(n, k == "numerical", f"features.{n}") for n, k in schema.features.items()]
    cols += [(s, False, f"features.{s}") for s in schema.segments if s not in schema.features]
    return cols


def _cell(value: object, numerical: bool, what: str) -> FeatureValue:
    if value is None:
        return None
    return _number(value, what) if numerical else _category(value, what)


class _Positional:
    """Reads rows of values in ``feature_order`` into named, checked feature rows."""

    def __init__(self, cols: list[_Column], order: Sequence[str]) -> None:
        index = {name: i for i, name in enumerate(order)}
        self.width = len(order)
        self.picks = [(name, index.get(name), num, what) for name, num, what in cols]

    def row(self, values: Sequence[Any]) -> _Row:
        return {
            name: None if pos is None else _cell(values[pos], num, what)
            for name, pos, num, what in self.picks
        }


def _column_rows(columns: Mapping[str, Sequence[Any]], n: int, cols: list[_Column]) -> list[_Row]:
    picks = [(name, columns.get(name), num, what) for name, num, what in cols]
    return [
        {name: None if col is None else _cell(col[i], num, what) for name, col, num, what in picks}
        for i in range(n)
    ]


def _positional(cols: list[_Column], feature_order: Sequence[str] | None, what: str) -> _Positional:
    if not feature_order:
        raise InvalidEvent(
            "invalid_type", f"{what}: positional values need the model's feature_order"
        )
    return _Positional(cols, feature_order)


def _v1_rows(
    instances: object, cols: list[_Column], feature_order: Sequence[str] | None
) -> list[_Row]:
    if not isinstance(instances, list):
        raise InvalidEvent(
            "invalid_type", f"instances: expected a list, got {type(instances).__name__}"
        )
    _check_rows(len(instances), "instances")
    rows: list[_Row] = []
    reader: _Positional | None = None
    for i, inst in enumerate(instances):
        if isinstance(inst, dict):
            rows.append({name: _cell(inst.get(name), num, what) for name, num, what in cols})
            continue
        if reader is None:
            reader = _positional(cols, feature_order, f"instances[{i}]")
        if not isinstance(inst, list):
            if reader.width != 1:
                raise InvalidEvent("invalid_type", f"instances[{i}]: expected a list or an object")
            values: list[Any] = [inst]  # a scalar instance of a one-feature model
        else:
            values = inst
        if len(values) != reader.width:
            raise InvalidEvent(
                INVALID_SHAPE,
                f"instances[{i}]: {len(values)} values, feature_order has {reader.width}",
            )
        rows.append(reader.row(values))
    return rows


def _v1_columns(inputs: Mapping[str, Any], cols: list[_Column]) -> list[_Row]:
    """TF-serving columnar ``{"inputs": {"feature": [v, ...], ...}}``."""
    wanted = {name for name, _, _ in cols}
    columns = {k: v for k, v in inputs.items() if k in wanted}
    for k, v in columns.items():
        if not isinstance(v, list):
            raise InvalidEvent("invalid_type", _clip(f"inputs.{k}: expected a list"))
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InvalidEvent(INVALID_SHAPE, f"inputs: columns of lengths {sorted(lengths)[:4]}")
    if not lengths:
        raise InvalidEvent("missing_field", "inputs: no column named like a feature")
    n = lengths.pop()
    _check_rows(n, "inputs")
    return _column_rows(columns, n, cols)


def _is_v2(inputs: list[Any]) -> bool:
    return not inputs or (isinstance(inputs[0], dict) and "datatype" in inputs[0])


def _per_feature_n(t: _Tensor) -> int:
    if len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1):
        return t.shape[0]
    raise InvalidEvent(
        INVALID_SHAPE, _clip(f"inputs ({t.name}): shape {list(t.shape)}, not [N] or [N, 1]")
    )


def _v2_rows(
    raw: list[Any], cols: list[_Column], feature_order: Sequence[str] | None
) -> list[_Row]:
    tensors = _tensors(raw, "inputs")
    if not tensors:
        return []
    names = {name for name, _, _ in cols} | set(feature_order or ())
    named = [t for t in tensors if t.name in names]
    if len(tensors) == 1 and not named:  # one [N, F] matrix, positional
        t = tensors[0]
        reader = _positional(cols, feature_order, f"inputs ({t.name})")
        f = reader.width
        if len(t.shape) == 2 and t.shape[1] == f:
            n = t.shape[0]
        elif len(t.shape) == 1 and (f == 1 or t.shape[0] == f):
            n = t.shape[0] if f == 1 else 1  # [N] of a one-feature model, else one row [F]
        else:
            raise InvalidEvent(
                INVALID_SHAPE,
                _clip(f"inputs ({t.name}): shape {list(t.shape)}, feature_order has {f}"),
            )
        _check_rows(n, "inputs")
        return [reader.row(t.values[i * f : (i + 1) * f]) for i in range(n)]
    if not named:
        raise InvalidEvent("missing_field", "inputs: no tensor named like a feature")
    lengths = {_per_feature_n(t) for t in named}
    if len(lengths) > 1:
        raise InvalidEvent(INVALID_SHAPE, f"inputs: tensors of lengths {sorted(lengths)[:4]}")
    n = lengths.pop()
    _check_rows(n, "inputs")
    return _column_rows({t.name: t.values for t in named}, n, cols)


def request_rows(
    data: Any, schema: ModelSchema, feature_order: Sequence[str] | None
) -> list[dict[str, FeatureValue]]:
    """A request's data -> one feature row per instance, in order.

    Each row has every schema feature (numerical: a finite float; categorical: its
    :func:`~driftwatch.events.schema.category_key`; absent or null: None) and every segment
    column that is not also a feature (a category or None). Values are checked as
    :class:`~driftwatch.events.decode.Decoder` checks an event's features (``invalid_type``,
    ``non_finite``).

    Shapes read:

    - V1 ``{"instances": [...]}``: each instance a list (positional, named by
      ``feature_order``; its length must equal ``feature_order``'s, else ``invalid_shape``),
      an object (by name; other keys ignored), or, for a one-name ``feature_order``, a scalar.
      ``instances`` wins over ``inputs`` when both are there.
    - V1 ``{"inputs": [...]}`` read as ``instances`` unless it is a V2 tensor list (its first
      element an object with ``datatype``), and TF-serving columnar ``{"inputs": {name:
      [values]}}`` (columns of one length).
    - V2 ``{"inputs": [tensor, ...]}``, each ``{name, shape, datatype, data}`` with ``data``
      flat or nested, row-major, as many values as the shape says (else ``invalid_shape``),
      values of the datatype (BOOL, INT*/UINT*, FP16/32/64, BYTES; null = missing; else
      ``invalid_type``). Either one tensor not named like a feature (or a ``feature_order``
      name), ``[N, F]`` with ``F = len(feature_order)``, read positionally (``[F]``: one row;
      ``[N]`` when ``feature_order`` has one name); or tensors named like the features, each
      ``[N]`` or ``[N, 1]``, all of one ``N`` (others ignored; a feature without a tensor is
      None). Several tensors none named like a feature: ``missing_field``.

    Positional values without ``feature_order``: ``invalid_type``. More than
    :data:`MAX_ROWS` instances: ``too_large``. Raises only :class:`InvalidEvent`.
    """
    try:
        if not isinstance(data, dict):
            raise InvalidEvent("not_an_object", f"data: got {type(data).__name__}")
        cols = _columns(schema)
        if "instances" in data:
            return _v1_rows(data["instances"], cols, feature_order)
        inputs = data.get("inputs")
        if inputs is None:
            raise InvalidEvent("missing_field", "instances or inputs")
        if isinstance(inputs, dict):
            return _v1_columns(inputs, cols)
        if not isinstance(inputs, list):
            raise InvalidEvent("invalid_type", f"inputs: got {type(inputs).__name__}")
        if not _is_v2(inputs):
            return _v1_rows(inputs, cols, feature_order)
        return _v2_rows(inputs, cols, feature_order)
    except InvalidEvent:
        raise
    except Exception as exc:  # by design: nothing else ever escapes
        raise _internal(exc) from None


# -- responses -> (prediction, score) ---------------------------------------------------------

_Target = tuple[float | str, float | None]


def _scalar_target(value: object, task: str, what: str) -> _Target:
    if value is None:
        raise InvalidEvent("missing_field", what)
    if isinstance(value, (list, dict)):
        raise InvalidEvent("invalid_type", f"{what}: expected a value, got {type(value).__name__}")
    if task == "regression":
        return _number(value, what), None
    return _category(value, what), None


def _probabilities(values: Sequence[Any], what: str) -> list[float]:
    if any(p is None for p in values):
        raise InvalidEvent("missing_field", f"{what}: a null probability")
    return [_number(p, what) for p in values]


def _target(value: object, task: str, what: str) -> _Target:
    """One instance's prediction: a scalar, a one-value list, or a list of probabilities
    (classification: the argmax as a category, and the score p[1] for two classes)."""
    if not isinstance(value, list):
        return _scalar_target(value, task, what)
    if len(value) == 1:
        return _scalar_target(value[0], task, what)
    if task == "regression" or not value:
        raise InvalidEvent(INVALID_SHAPE, f"{what}: {len(value)} values for one instance")
    ps = _probabilities(value, what)
    best = max(range(len(ps)), key=ps.__getitem__)  # the first of equal maxima
    return category_key(best), ps[1] if len(ps) == 2 else None


def _score(values: Sequence[Any], what: str) -> float | None:
    """A scores row: [p] is p (the positive class), [p0, p1] is p1, more classes None."""
    if len(values) == 1:
        return None if values[0] is None else _number(values[0], what)
    ps = _probabilities(values, what)
    return ps[1] if len(ps) == 2 else None


def _rows_of(t: _Tensor) -> list[list[Any]]:
    """An output tensor [N] or [N, K] -> its N rows."""
    if len(t.shape) == 1:
        return [[v] for v in t.values]
    if len(t.shape) == 2 and t.shape[1] > 0:
        k = t.shape[1]
        return [t.values[i * k : (i + 1) * k] for i in range(t.shape[0])]
    raise InvalidEvent(INVALID_SHAPE, _clip(f"outputs ({t.name}): shape {list(t.shape)}"))


def _is_probabilities(name: str) -> bool:
    lower = name.lower()
    return "prob" in lower or "score" in lower


def _v2_targets(raw: object, task: str) -> list[_Target]:
    tensors = _tensors(raw, "outputs")
    if not tensors:
        raise InvalidEvent("missing_field", "outputs")
    probs = None
    if task != "regression":
        probs = next((t for t in tensors if _is_probabilities(t.name)), None)
    pred = next((t for t in tensors if t is not probs), None)
    if pred is not None:
        rows = _rows_of(pred)
        _check_rows(len(rows), "outputs")
        what = _clip(f"outputs ({pred.name})", 100)
        out = [_target(row if len(row) > 1 else row[0], task, what) for row in rows]
        if probs is None:
            return out
        scores = _rows_of(probs)
        if len(scores) != len(out):
            raise InvalidEvent(
                INVALID_SHAPE, f"outputs: {len(out)} predictions, {len(scores)} rows of scores"
            )
        what = _clip(f"outputs ({probs.name})", 100)
        return [(p, _score(row, what)) for (p, _), row in zip(out, scores, strict=True)]
    assert probs is not None  # tensors is not empty
    rows = _rows_of(probs)
    _check_rows(len(rows), "outputs")
    what = _clip(f"outputs ({probs.name})", 100)
    out = []
    for row in rows:
        if len(row) > 1:
            out.append(_target(row, task, what))
            continue
        score = _score(row, what)
        if score is None:
            raise InvalidEvent("missing_field", f"{what}: a null score")
        out.append(("1" if score >= 0.5 else "0", score))  # the decision at 0.5
    return out


def response_rows(data: Any, task: str) -> tuple[list[_Target], str | None]:
    """A response's data -> ([(prediction, score)] per instance, model_version).

    ``task`` is the schema's: a prediction is a finite float for ``regression`` and a
    category (:func:`~driftwatch.events.schema.category_key`) otherwise.

    - V1 ``{"predictions": [...]}``: each a scalar (the class or the value; score None) or
      a list: of one value (that value), else of class probabilities (classification only,
      else ``invalid_shape``): the prediction is the index of the largest (the first of
      equal ones) as a category (``"0"``, ``"1"``, ...); the score is the probability of
      class 1 when there are 2 classes, None for more.
    - V2 ``{"outputs": [tensor, ...]}``: for classification, the first output whose name
      contains ``prob`` or ``score`` (any case: ``probabilities``, ``predict_proba``,
      ``output_probability``, ``scores``) holds the scores, and the first other output the
      predictions. Predictions ``[N]``/``[N, 1]`` are scalars, ``[N, K]`` rows of
      probabilities (as in V1). Scores ``[N]``/``[N, 1]`` are the positive class's
      probability, ``[N, 2]`` give column 1, ``[N, K > 2]`` None; both tensors must have
      the same N (``invalid_shape``). With no other output, the scores give the
      predictions too: the argmax of ``[N, K]``, and for ``[N]``/``[N, 1]`` ``"1"`` when
      the score is at least 0.5, else ``"0"``. For regression the first output holds the
      predictions (scores None).
    - ``model_version``: the data's top-level ``model_version`` (V2 responses carry it),
      checked like an event's (absent, null or ``""``: None).

    Raises only :class:`InvalidEvent`.
    """
    try:
        if not isinstance(data, dict):
            raise InvalidEvent("not_an_object", f"data: got {type(data).__name__}")
        version = data.get("model_version")
        version = None if version is None or version == "" else check_version(version)
        if "predictions" in data:
            preds = data["predictions"]
            if not isinstance(preds, list):
                raise InvalidEvent(
                    "invalid_type", f"predictions: expected a list, got {type(preds).__name__}"
                )
            _check_rows(len(preds), "predictions")
            return [_target(p, task, "prediction") for p in preds], version
        if "outputs" in data:
            return _v2_targets(data["outputs"], task), version
        raise InvalidEvent("missing_field", "predictions or outputs")
    except InvalidEvent:
        raise
    except Exception as exc:  # by design: nothing else ever escapes
        raise _internal(exc) from None


__all__ = [
    "INVALID_SHAPE",
    "KSERVE_REQUEST",
    "KSERVE_RESPONSE",
    "MAX_CE_ID_LENGTH",
    "MAX_ROWS",
    "NEW_REASONS",
    "NOT_INFERENCE_EVENT",
    "CloudEvent",
    "model_of",
    "pair_id",
    "parse",
    "parse_http",
    "request_rows",
    "response_rows",
]
