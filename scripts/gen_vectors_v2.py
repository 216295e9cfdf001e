"""Golden vectors for SagaTracker v2, written by fastavro (see scripts/gen-vectors-v2).

valid:     v2 events with their exact datum and single-object bytes.
from_v1:   events written by fastavro with the v1 schema, and the event a v2 reader resolves them to (fastavro's
           schema resolution): the second opinion for our resolution path.
invalid:   payloads a v2 decoder must reject, each with the reason.
"""
import datetime
import io
import json
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

v2_path, v1_path, out_path = sys.argv[1:4]
with open(v2_path) as f:
    v2_json = json.load(f)
with open(v1_path) as f:
    v1_json = json.load(f)
v2 = parse_schema(v2_json)
v1 = parse_schema(v1_json)


def fp_le_hex(schema):
    pcf = to_parsing_canonical_form(schema)
    # fastavro's CRC-64-AVRO fingerprint is the hex of the 8 bytes as written on the wire (little-endian).
    le_hex = fingerprint(pcf, "CRC-64-AVRO")
    return pcf, int.from_bytes(bytes.fromhex(le_hex), "little"), le_hex


pcf2, fp2, fp2_hex = fp_le_hex(v2)
_, fp1, fp1_hex = fp_le_hex(v1)
assert fp1_hex == "4ea4c63af7f12518", fp1_hex  # the v1 golden vectors' fingerprint
header = "c301" + fp2_hex
v1_header = "c301" + fp1_hex

BASE = {
    "eventId": "0190c3e2-5d4f-7c1a-9b2e-1234567890ab",
    "idempotencyKey": "saga-0001:reserve_stock:STARTED:1",
    "sagaId": "saga-0001",
    "sagaType": "OrderSaga",
    "step": "reserve_stock",
    "status": "STARTED",
    "attempt": 1,
    "orderId": None,
    "service": "order-service",
    "recordedAt": 1732406400000000,
    "durationMicros": None,
    "error": None,
    "metadata": {},
}
V2_NULLS = {"stepIndex": None, "stepCount": None, "compensable": None, "causeIdempotencyKey": None}


def ev(**changes):
    e = dict(BASE)
    e.update(V2_NULLS)
    e.update(changes)
    e["metadata"] = dict(sorted(e["metadata"].items()))
    return e


def datum(schema, event):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, event)
    return buf.getvalue()


def for_json(event):
    # fastavro reads logical types as Python objects (UUID, datetime); the vectors hold the wire values.
    out = dict(event)
    out["eventId"] = str(out["eventId"])
    at = out["recordedAt"]
    if not isinstance(at, int):
        delta = at - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        out["recordedAt"] = (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds
    return out


valid_events = [
    ("v2_nulls_like_v1", ev()),
    ("first_step_started", ev(stepIndex=0, stepCount=3, compensable=True)),
    (
        "last_step_succeeded",
        ev(
            idempotencyKey="saga-0001:ship:SUCCEEDED:1",
            step="ship",
            status="SUCCEEDED",
            durationMicros=1532,
            orderId="order-42",
            stepIndex=2,
            stepCount=3,
            compensable=False,
            metadata={"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7"},
        ),
    ),
    (
        "failed_with_error",
        ev(
            idempotencyKey="saga-0002:charge_payment:FAILED:2",
            sagaId="saga-0002",
            step="charge_payment",
            status="FAILED",
            attempt=2,
            durationMicros=250000,
            error={"kind": "InsufficientFunds", "message": "balance 10.00 < amount 25.50 — ünïcødé"},
            stepIndex=1,
            stepCount=3,
            compensable=True,
        ),
    ),
    (
        "compensation_with_cause",
        ev(
            idempotencyKey="saga-0002:reserve_stock:COMPENSATION_STARTED:1",
            sagaId="saga-0002",
            status="COMPENSATION_STARTED",
            stepIndex=0,
            stepCount=3,
            compensable=True,
            causeIdempotencyKey="saga-0002:charge_payment:FAILED:2",
        ),
    ),
    (
        "compensated",
        ev(
            idempotencyKey="saga-0002:reserve_stock:COMPENSATED:1",
            sagaId="saga-0002",
            status="COMPENSATED",
            durationMicros=0,
            stepIndex=0,
            stepCount=3,
            compensable=True,
            causeIdempotencyKey="saga-0002:charge_payment:FAILED:2",
        ),
    ),
    ("extreme_ints", ev(attempt=-2147483648, recordedAt=-1, durationMicros=9223372036854775807,
                        stepIndex=2147483647, stepCount=-2147483648, compensable=False)),
    ("empty_cause_and_metadata_key", ev(causeIdempotencyKey="", metadata={"": ""})),
]

valid = []
for name, event in valid_events:
    d = datum(v2, event)
    back = fastavro.schemaless_reader(io.BytesIO(d), v2)
    assert for_json(back) == event, (name, for_json(back), event)
    valid.append({"name": name, "event": event, "datum_hex": d.hex(), "single_object_hex": header + d.hex()})

from_v1 = []
for name, event in valid_events[1:5]:
    v1_event = {k: v for k, v in event.items() if k not in V2_NULLS}
    d = datum(v1, v1_event)
    resolved = for_json(fastavro.schemaless_reader(io.BytesIO(d), v1, v2))
    assert resolved == dict(v1_event, **V2_NULLS), name
    from_v1.append({"name": name, "v1_single_object_hex": v1_header + d.hex(), "read_as_v2": resolved})

good = bytes.fromhex(valid[2]["datum_hex"])
nulls_tail = bytes.fromhex(valid[0]["datum_hex"])
invalid = [
    ("empty", "", "empty payload"),
    ("unknown_fingerprint", "c301" + "00" * 8 + good.hex(), "fingerprint of no known version"),
    ("truncated_header", header[:12], "truncated header"),
    ("truncated_v2_tail", header + nulls_tail[:-1].hex(), "datum ends inside the v2 fields"),
    ("v1_datum_under_v2_fingerprint", header + datum(v1, {k: v for k, v in BASE.items()}).hex(),
     "a v1 datum labelled with the v2 fingerprint: the v2 fields are missing"),
    ("trailing_bytes", header + good.hex() + "0000", "bytes after a complete datum"),
    ("step_index_union_out_of_range", header + nulls_tail[:-4].hex() + "06000000", "stepIndex union branch 3"),
    ("compensable_not_a_boolean", header + nulls_tail[:-2].hex() + "0207" + "00", "boolean byte 7"),
    ("step_count_int_overflow", header + nulls_tail[:-3].hex() + "02" + "8080808020" + "0000",
     "stepCount does not fit an int"),
    ("cause_length_beyond_payload", header + nulls_tail[:-1].hex() + "02" + "c801", "causeIdempotencyKey claims 100 bytes"),
]
# Every invalid payload must also be rejected by fastavro (or be a header-level defect it does not parse).
for name, hexs, _ in invalid:
    raw = bytes.fromhex(hexs)
    if name in ("empty", "unknown_fingerprint", "truncated_header"):
        continue
    if name in ("compensable_not_a_boolean", "step_count_int_overflow"):
        # The spec: a boolean byte is 0 or 1, an int fits 32 bits; fastavro reads any non-zero byte as true and
        # an int as a long. We follow the spec.
        continue
    body = raw[10:]
    buf = io.BytesIO(body)
    try:
        fastavro.schemaless_reader(buf, v2)
        accepted = buf.tell() == len(body)
    except Exception:
        accepted = False
    assert not accepted, f"fastavro accepts invalid vector {name}"

doc = {
    "schema_file": "schemas/history/SagaTracker.v2.avsc",
    "parsing_canonical_form": pcf2,
    "fingerprint_crc64_avro_hex_le": fp2_hex,
    "fingerprint_u64": str(fp2),
    "v1_fingerprint_crc64_avro_hex_le": fp1_hex,
    "single_object_header_hex": header,
    "encoding_notes": "datum_hex is the Avro binary datum (no header); single_object_hex = header + datum. metadata "
    "map entries are written in ascending key order, as one block followed by the 0 terminator. from_v1: bytes "
    "written with the v1 schema and the event fastavro's schema resolution reads from them with the v2 schema. "
    f"Generated with fastavro {fastavro.__version__} by scripts/gen-vectors-v2",
    "valid": valid,
    "from_v1": from_v1,
    "invalid": [{"name": n, "single_object_hex": h, "why": w} for n, h, w in invalid],
}
with open(out_path, "w") as f:
    json.dump(doc, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"{out_path}: {len(valid)} valid, {len(from_v1)} from v1, {len(invalid)} invalid; fingerprint {fp2_hex}")
