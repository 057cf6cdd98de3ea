"""Property tests: the event-file reader against protobuf's own encoder, and on damaged files."""

from __future__ import annotations

import io
import math
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wrapper.curves.tblog import EventFileWarning, read_event_files

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tags = st.sampled_from(["loss/current", "loss/average", "lr/unet", "lr/group0", "ü/ß", "x" * 200])
f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
points = st.lists(
    st.tuples(tags, st.integers(-(2**63), 2**63 - 1), f32, st.sampled_from(["simple", "f32", "f64"])),
    max_size=40,
)


def encode(batch: list[tuple[str, int, float, str]]) -> bytes:
    """Serialize with tensorboard's protobufs and its RecordWriter framing."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    out = io.BytesIO()
    writer = RecordWriter(out)
    writer.write(event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString())
    for i, (tag, step, value, kind) in enumerate(batch):
        if kind == "simple":
            v = summary_pb2.Summary.Value(tag=tag, simple_value=value)
        else:
            shape = tensor_shape_pb2.TensorShapeProto()
            fields = {"f32": {"dtype": 1, "float_val": [value]}, "f64": {"dtype": 2, "double_val": [value]}}[kind]
            v = summary_pb2.Summary.Value(tag=tag, tensor=tensor_pb2.TensorProto(tensor_shape=shape, **fields))
        event = event_pb2.Event(wall_time=1e9 + i, step=step, summary=summary_pb2.Summary(value=[v]))
        writer.write(event.SerializeToString())
    return out.getvalue()


def read_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", EventFileWarning)
        path = Path(tmp) / "events.out.tfevents.0.host.0.0"
        path.write_bytes(data)
        return read_event_files([path])


def as_rows(frame) -> list[tuple]:
    return [
        (t, s, "nan" if math.isnan(v) else v, w)
        for t, s, v, w in zip(frame["tag"].astype(str), frame["step"], frame["value"], frame["wall_time"], strict=True)
    ]


def expected_rows(batch) -> list[tuple]:
    rows = [(t, s, "nan" if math.isnan(v) else v, 1e9 + i) for i, (t, s, v, _) in enumerate(batch)]
    return sorted(rows, key=lambda r: (r[0], r[1]))  # the reader's order: tag, then step, stable


@PROPS
@given(points)
def test_reads_back_what_protobuf_wrote(batch):
    frame = read_bytes(encode(batch))
    assert as_rows(frame) == expected_rows(batch)
    assert frame.attrs["problems"] == []


@PROPS
@given(points.filter(bool), st.data())
def test_one_flipped_byte_is_reported_and_loses_at_most_the_rest(batch, data):
    raw = bytearray(encode(batch))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    frame = read_bytes(bytes(raw))
    assert len(frame.attrs["problems"]) == 1  # CRC32C catches every single-byte error
    assert set(as_rows(frame)) <= set(expected_rows(batch))


@PROPS
@given(points, st.data())
def test_any_truncation_keeps_the_complete_records(batch, data):
    raw = encode(batch)
    cut = data.draw(st.integers(0, len(raw)))
    frame = read_bytes(raw[:cut])
    assert set(as_rows(frame)) <= set(expected_rows(batch))
    assert bool(frame.attrs["problems"]) == (cut not in record_ends(raw))


def record_ends(raw: bytes) -> set[int]:
    ends, pos = {0}, 0
    while pos < len(raw):
        pos += 16 + int.from_bytes(raw[pos : pos + 8], "little")
        ends.add(pos)
    return ends
