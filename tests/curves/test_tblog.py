"""wrapper.tblog on real event files written by tensorboard's writers with sd-scripts' tags."""

from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from runfactory import sd_points, write_events

from wrapper.curves import tfevents
from wrapper.curves.tblog import EventFileWarning, read_event_files
from wrapper.kohya.logs import find_event_files
from wrapper.runs.layout import read_run_scalars


def accumulator_rows(path: Path) -> list[tuple[str, int, float, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    simple = [(tag, e.step, e.value, e.wall_time) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    tensors = [
        (tag, e.step, float(make_ndarray(e.tensor_proto)), e.wall_time)
        for tag in acc.Tags()["tensors"]
        for e in acc.Tensors(tag)
    ]
    return sorted(simple + tensors)


def rows(frame) -> list[tuple[str, int, float, float]]:
    return list(zip(frame["tag"].astype(str), frame["step"], frame["value"], frame["wall_time"], strict=True))


def read_quiet(files):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventFileWarning)
        return read_event_files(files)


@pytest.mark.parametrize("tensor", [False, True], ids=["simple_value", "tensor"])
def test_every_point_matches_tensorboard(tmp_path, tensor):
    loss = np.linspace(0.3, 0.1, 300)
    path = write_events(tmp_path / "logs" / "20240101120000" / "network_train", sd_points(loss), tensor=tensor)
    frame = read_run_scalars(tmp_path)
    assert list(frame.columns) == ["run", "tag", "step", "value", "wall_time"]
    assert sorted(rows(frame)) == accumulator_rows(path)
    assert set(frame["tag"].astype(str)) == {"loss/current", "loss/average", "lr/unet", "lr/group0"}
    assert frame.attrs["problems"] == [] and frame.attrs["notes"] == []
    assert frame["run"].iloc[0] == tmp_path.name


def test_more_than_tensorboards_default_10000_points_per_tag(tmp_path):
    path = write_events(tmp_path, [("loss/current", s, float(s)) for s in range(12_345)])
    frame = read_event_files([path])
    assert len(frame) == 12_345
    assert frame["value"].tolist() == [float(s) for s in range(12_345)]


def test_varint_widths_step_zero_and_repeated_steps(tmp_path):
    steps = [0, 1, 127, 128, 16_383, 16_384, 2**31, 2**40, 5, 5, 5]
    path = write_events(tmp_path, [("loss/current", s, i / 10) for i, s in enumerate(steps)])
    frame = read_event_files([path])
    assert frame["step"].tolist() == sorted(steps)
    # several points at one step (gradient accumulation) keep their file order
    assert frame[frame["step"] == 5]["value"].tolist() == pytest.approx([0.8, 0.9, 1.0])


def test_nan_and_inf_values_are_kept(tmp_path):
    path = write_events(
        tmp_path, [("loss/current", 1, 0.5), ("loss/current", 2, math.nan), ("loss/current", 3, math.inf)]
    )
    values = read_event_files([path])["value"].to_numpy()
    assert values[0] == 0.5 and math.isnan(values[1]) and values[2] == math.inf


def test_resumed_run_is_one_series(tmp_path):
    logs = tmp_path / "logs"
    write_events(logs / "x20240101120000" / "network_train", sd_points(np.full(6, 0.2)))
    write_events(logs / "x20240101130000" / "network_train", sd_points(np.full(3, 0.1), start=7), wall0=2e9)
    frame = read_run_scalars(tmp_path)
    current = frame[frame["tag"] == "loss/current"]
    assert current["step"].tolist() == list(range(1, 10))
    assert current["value"].tolist() == pytest.approx([0.2] * 6 + [0.1] * 3)
    assert frame.attrs["notes"] == []


def test_restarted_steps_replace_the_older_points(tmp_path):
    """Resuming without skip_until_initial_step restarts global_step: the later folder wins."""
    logs = tmp_path / "logs"
    write_events(logs / "b20240101120000" / "network_train", sd_points(np.full(6, 0.2)))
    write_events(logs / "a20240102120000" / "network_train", sd_points(np.full(4, 0.1)), wall0=2e9)
    frame = read_run_scalars(tmp_path)
    current = frame[frame["tag"] == "loss/current"]
    assert current["step"].tolist() == [1, 2, 3, 4]
    assert current["value"].tolist() == pytest.approx([0.1] * 4)
    assert any("loss/current restarts at step 1; 6 earlier points" in n for n in frame.attrs["notes"])


def test_log_config_hparams_folder_is_ignored(tmp_path):
    tracker = tmp_path / "logs" / "20240101120000" / "network_train"
    main = write_events(tracker, sd_points(np.full(3, 0.2)))
    write_events(tracker / "1704110400.123", [("loss/current", 1, 99.0)])
    assert find_event_files(tmp_path / "logs") == [main]
    assert 99.0 not in read_run_scalars(tmp_path)["value"].tolist()


def test_no_logs_gives_an_empty_frame(tmp_path):
    frame = read_run_scalars(tmp_path)
    assert len(frame) == 0 and list(frame.columns) == ["run", "tag", "step", "value", "wall_time"]
    empty = tmp_path / "events.out.tfevents.1.host.1.0"
    empty.write_bytes(b"")
    assert len(read_event_files([empty])) == 0


def test_multi_value_summary_and_other_encodings(tmp_path):
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    def tensor(dtype: int, **fields) -> tensor_pb2.TensorProto:
        return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(), **fields)

    V = summary_pb2.Summary.Value
    values = [
        V(tag="a", simple_value=1.5),
        V(tag="b", tensor=tensor(2, double_val=[0.1])),
        V(tag="c", tensor=tensor(1, tensor_content=struct.pack("<f", 2.5))),
        V(tag="d", tensor=tensor(19, half_val=[int(np.float16(0.75).view(np.uint16))])),
        V(tag="e", tensor=tensor(14, tensor_content=struct.pack("<H", 0x3FC0))),  # bfloat16 1.5
        V(tag="text", tensor=tensor(7, string_val=[b"not a scalar"])),
        V(
            tag="vector",
            tensor=tensor_pb2.TensorProto(
                dtype=1,
                float_val=[1, 2],
                tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]),
            ),
        ),
    ]
    writer = EventFileWriter(str(tmp_path))
    writer.add_event(event_pb2.Event(wall_time=1.0, step=3, summary=summary_pb2.Summary(value=values)))
    writer.close()
    frame = read_event_files(find_event_files(tmp_path))
    assert dict(zip(frame["tag"].astype(str), frame["value"], strict=True)) == pytest.approx(
        {"a": 1.5, "b": 0.1, "c": 2.5, "d": 0.75, "e": 1.5}
    )
    assert set(frame["step"]) == {3}


def test_truncated_file_keeps_the_rows_before_and_warns(tmp_path):
    path = write_events(tmp_path, [("loss/current", s, 0.1) for s in range(1, 101)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.warns(EventFileWarning, match=r"ends inside a record .* at byte \d+ \(99 rows read before it\)"):
        frame = read_event_files([path])
    assert frame["step"].tolist() == list(range(1, 100))
    assert str(path) in frame.attrs["problems"][0]


def test_flipped_payload_byte_skips_one_record(tmp_path):
    path = write_events(tmp_path, [("loss/current", s, 0.1) for s in range(1, 101)])
    data = bytearray(path.read_bytes())
    offsets, _ = tfevents.frame_records(bytes(data))
    data[offsets[50] + 12 + 3] ^= 0x01  # inside the payload of the 50th scalar record
    path.write_bytes(bytes(data))
    with pytest.warns(EventFileWarning, match=r"payload CRC mismatch.*\(49 rows read before it\)"):
        frame = read_event_files([path])
    assert len(frame) == 99  # TensorBoard and tbparse stop here and return about half, silently


def test_flipped_header_byte_stops_the_file(tmp_path):
    path = write_events(tmp_path, [("loss/current", s, 0.1) for s in range(1, 101)])
    data = bytearray(path.read_bytes())
    offsets, _ = tfevents.frame_records(bytes(data))
    data[offsets[40] + 2] ^= 0x10  # the length field of the 40th scalar record
    path.write_bytes(bytes(data))
    with pytest.warns(EventFileWarning, match=r"header CRC mismatch.*\(39 rows read before it\)"):
        frame = read_event_files([path])
    assert frame["step"].tolist() == list(range(1, 40))


def test_masked_crc_matches_tensorboard():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    for data in (b"", b"a", bytes(range(256)) * 3):
        assert tfevents.masked_crc(data) == masked_crc32c(data)


def test_a_valid_record_that_is_not_an_event_is_skipped(tmp_path):
    import io

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    def event(step: int) -> bytes:
        value = summary_pb2.Summary.Value(tag="loss/current", simple_value=0.5)
        return event_pb2.Event(wall_time=1.0, step=step, summary=summary_pb2.Summary(value=[value])).SerializeToString()

    out = io.BytesIO()
    writer = RecordWriter(out)
    for payload in (event(1), b"\xff\xff\xff\xff", event(2)):
        writer.write(payload)
    path = tmp_path / "events.out.tfevents.0.host.0.0"
    path.write_bytes(out.getvalue())
    with pytest.warns(EventFileWarning, match=r"not a readable Event.*\(1 rows read before it\)"):
        frame = read_event_files([path])
    assert frame["step"].tolist() == [1, 2]


# ---- files too large, sparse or lying about their length: bounded memory ----------------------------------


def test_a_20_gb_sparse_file_is_read_in_bounded_memory(tmp_path):
    import resource
    import time
    import tracemalloc

    import pandas  # noqa: F401  (imported before measuring)

    path = write_events(tmp_path, [("loss/current", s, 0.1) for s in range(1, 11)])
    real = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(20 * 2**30)  # a hole: 20 GB of zeros that take no disk
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.warns(EventFileWarning, match=rf"header CRC mismatch.* at byte {real} \(10 rows read before it\)"):
            frame = read_event_files([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5 and frame["step"].tolist() == list(range(1, 11))
    assert peak < 20 * 2**20 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 * 1024  # KiB


@pytest.mark.parametrize("length", [2**62, 2**64 - 1, tfevents.MAX_RECORD + 1])
def test_an_absurd_length_is_damage_never_an_allocation(tmp_path, length):
    path = write_events(tmp_path, [("loss/current", s, 0.1) for s in range(1, 11)])
    real = path.stat().st_size
    with open(path, "ab") as f:
        f.write(struct.pack("<QI", length, tfevents.masked_crc(struct.pack("<Q", length))))
        f.truncate(real + 16 + tfevents.MAX_RECORD + 1024)  # even a length inside the file is refused over the cap
    with pytest.warns(EventFileWarning, match=rf"record length {length} is absurd .* at byte {real} \(10 rows"):
        frame = read_event_files([path])
    assert len(frame) == 10


def test_a_length_beyond_the_end_of_the_file_is_a_cut_off_record(tmp_path):
    path = write_events(tmp_path, [("loss/current", s, 0.1) for s in range(1, 11)])
    with open(path, "ab") as f:
        f.write(struct.pack("<QI", 5000, tfevents.masked_crc(struct.pack("<Q", 5000))) + b"x" * 100)
    with pytest.warns(EventFileWarning, match=r"ends inside a record \(5016 bytes long, 112 are left"):
        assert len(read_event_files([path])) == 10


def test_reading_in_chunks_changes_nothing(tmp_path, monkeypatch):
    """Rows, damage, byte offsets and rows-before are the same whatever the chunk size."""
    path = write_events(tmp_path, [(t, s, s / 7) for s in range(1, 301) for t in ("loss/current", "lr/unet", "ü")])
    data = bytearray(path.read_bytes())
    offsets, _ = tfevents.frame_records(bytes(data))
    data[offsets[500] + 14] ^= 0x01  # a payload byte: one record skipped
    path.write_bytes(bytes(data[:-5]))  # and a cut-off tail
    whole = read_quiet([path])
    monkeypatch.setattr(tfevents, "CHUNK", 1000)
    chunked = read_quiet([path])
    assert rows(chunked) == rows(whole) and len(whole) == 3 * 300 - 2
    assert chunked.attrs["problems"] == whole.attrs["problems"] and len(whole.attrs["problems"]) == 2


@pytest.mark.parametrize(("steps_per_epoch", "start"), [(None, 1), (4, 1), (10, 1), (4, 9), (6, 3)])
def test_validation_running_averages_become_each_pass_mean(tmp_path, steps_per_epoch, start):
    truth = {step: 0.3 - step / 100 + (step % 3) / 50 for step in range(start, start + 24)}
    points = sd_points([0.1] * 24, start=start, steps_per_epoch=steps_per_epoch, validation=truth.__getitem__,
                       validate_every=2)
    logged = {s: v for t, s, v in points if t == "loss/validation/step_average"}
    frame = read_quiet([write_events(tmp_path, points)])
    got = frame[frame["tag"] == "loss/validation/step_average"]
    assert dict(zip(got["step"].tolist(), got["value"].tolist(), strict=True)) == pytest.approx(
        {s: truth[s] for s in logged}, rel=1e-5)
    divergence = frame[frame["tag"] == "loss/validation/step_divergence"]
    assert divergence["value"].to_numpy() + 0.1 == pytest.approx(got["value"].to_numpy(), rel=1e-5, abs=1e-7)
    decoded = any("running average" in note for note in frame.attrs["notes"])
    assert decoded == any(abs(logged[s] - truth[s]) > 1e-6 for s in logged)


def test_validation_pass_seconds_come_from_the_log_timestamps(tmp_path):
    from wrapper.curves.smoothing import validation_pass_seconds

    points = sd_points([0.1] * 10, validation=lambda s: 0.2, validate_every=5)  # 1 s between points
    frame = read_quiet([write_events(tmp_path, points)])
    # each step writes loss/current, loss/average, lr/unet, lr/group0, then the validation average
    assert validation_pass_seconds(frame) == (2, 4.0)
    assert validation_pass_seconds(frame[frame["tag"] != "loss/validation/step_average"]) == (0, None)
