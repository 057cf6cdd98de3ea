"""TFRecord event files -> columns: record framing, CRC32C checks and a small protobuf decoder.

An event file is a TFRecord stream: per record a little-endian uint64 length, the masked CRC32C of
those 8 bytes, the payload (an `Event` protobuf) and the masked CRC32C of the payload. Payloads are
decoded by a hand-written protobuf walker; records that share one byte layout (the usual case: one
scalar per event, one tag) are then decoded together with numpy, which is what makes this fast.
Only scalars are kept: `simple_value`, and one-element float tensors (TF2-style writers).

Files over `CHUNK` are memory-mapped, every file is walked a chunk at a time, and a length field is
believed only when its CRC holds and it is at most `MAX_RECORD` and inside the file: a huge (or
sparse, or damaged) file costs memory in proportion to the rows it holds, never to its size or to
what a header claims.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_LEN = struct.Struct("<Q")
_HEADER = struct.Struct("<QI")  # a record's length and the masked CRC32C of its 8 bytes
#: The longest record read. Scalar events take tens of bytes; a longer length field is damage, and is
#: reported without allocating it.
MAX_RECORD = 64 << 20
#: Records are checked and decoded a chunk of the file at a time, so memory stays bounded by the chunk
#: (plus the rows kept) however large the file is.
CHUNK = 16 << 20
Buffer = bytes | bytearray | memoryview | mmap.mmap
_FLOAT_DTYPES = {1: "f4", 2: "f8", 19: "f2", 14: "bf2"}  # DT_FLOAT, DT_DOUBLE, DT_HALF, DT_BFLOAT16
_WIDTH = {"f4": 4, "f8": 8, "f2": 2, "bf2": 2}


@dataclass(frozen=True)
class Damage:
    """Where a file is damaged: the record index, its byte offset and what is wrong."""

    record: int
    offset: int
    message: str


@dataclass(frozen=True)
class Decoded:
    """Tag names, columns (order, tag code, step, value, wall_time) and damage of one file."""

    tags: list[str]
    columns: dict[str, np.ndarray]
    damage: list[Damage]

    def rows_before(self, record: int) -> int:
        """How many rows come from records before `record`."""
        import numpy as np

        return int(np.searchsorted(self.columns["order"], record))


# ---- CRC and framing -----------------------------------------------------------------------------


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC32C of `data`."""
    import crc32c

    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_records(buf: Buffer, start: int = 0, until: int | None = None) -> tuple[list[int], int]:
    """Offsets of the records from `start` on whose headers hold, and where the walk stopped.

    A header holds when its length CRC matches and the length is at most MAX_RECORD and inside the
    file; the walk stops at the first that does not, at the end of the file, or at the first record
    that starts at or after `until`. Only the first header of each length needs a CRC call.
    """
    size = len(buf)
    last = min(size - 16, size if until is None else until - 1)  # the last offset a record may start at
    offsets, pos, unpack, known = [], start, _HEADER.unpack_from, {}
    append, crc_of = offsets.append, known.get
    while pos <= last:
        length, crc = unpack(buf, pos)
        if crc_of(length) != crc:
            if length > MAX_RECORD or masked_crc(_LEN.pack(length)) != crc:
                break
            known[length] = crc
        end = pos + 16 + length
        if end > size:
            break
        append(pos)
        pos = end
    return offsets, pos


def _stop_reason(buf: Buffer, stop: int) -> str:
    """Why the record walk stopped at `stop`, short of the end of the file."""
    left = len(buf) - stop
    if left < 16:
        return f"file ends inside a record header ({left} of 16 bytes: cut off or still written)"
    length, crc = _HEADER.unpack_from(buf, stop)
    if masked_crc(_LEN.pack(length)) != crc:
        return "record header CRC mismatch; the rest was not read"
    if length > MAX_RECORD:
        return (f"record length {length} is absurd (more than {MAX_RECORD >> 20} MiB, the most a scalar reader "
                "accepts); the rest was not read")
    return f"file ends inside a record ({16 + length} bytes long, {left} are left: cut off or still written)"


def _check_crcs(buf: Buffer, offsets: list[int], stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets, payload lengths and payload-CRC verdicts of framed records (headers already checked)."""
    import crc32c
    import numpy as np

    offs = np.asarray(offsets, np.int64)
    ends = np.append(offs[1:], stop)
    crc, ranges = crc32c.crc32c, zip(offsets, [*offsets[1:], stop], strict=True)
    with memoryview(buf) as mv:
        crcs = np.array([crc(mv[a + 12 : b - 4]) for a, b in ranges], np.uint32)
    masked = ((crcs >> np.uint32(15)) | (crcs << np.uint32(17))) + np.uint32(0xA282EAD8)
    return offs, ends - offs - 16, masked == _u32(np.frombuffer(buf, np.uint8), ends - 4)


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values of non-negative ints: by counting when they are small, else by sorting."""
    import numpy as np

    if not len(values):
        return values
    return np.flatnonzero(np.bincount(values)) if values.max() < 1 << 16 else np.unique(values)


def _u32(arr: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Little-endian uint32 at each byte offset in `at`."""
    from numpy.lib.stride_tricks import sliding_window_view

    return sliding_window_view(arr, 4)[at].view("<u4").ravel() if len(arr) >= 4 else at[:0].astype("<u4")


# ---- protobuf ------------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterable[tuple[int, int, int, int]]:
    """Yield (field number, wire type, start, stop) per field; for a varint, start is where it begins."""
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            stop = _varint(buf, pos)[1]
        elif wire in (1, 5):
            stop = pos + (8 if wire == 1 else 4)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            stop = pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if stop > end:
            raise ValueError("field runs past the end of its message")
        yield number, wire, pos, stop
        pos = stop


def _tensor_scalar(buf: bytes, start: int, end: int) -> tuple[str, int] | None:
    """(kind, offset) of the value of a one-element float tensor, else None."""
    dtype, elements, found = 0, 1, None
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 0:
            dtype = _varint(buf, a)[0]
        elif number == 2 and wire == 2:
            for n, w, da, db in _fields(buf, a, b):
                if n == 2 and w == 2:
                    sizes = [_varint(buf, s)[0] for m, ww, s, _ in _fields(buf, da, db) if m == 1 and ww == 0]
                    elements *= sizes[0] if sizes else 0
        elif (number == 4 and wire == 2) or (number in (5, 6) and wire in (1, 2, 5)):
            found = ({4: None, 5: "f4", 6: "f8"}[number], a, b - a)
        elif number == 13 and wire in (0, 2):
            found = ("half", a, b - a)
    kind = _FLOAT_DTYPES.get(dtype)
    if kind is None or elements != 1 or found is None:
        return None
    how, at, size = found
    if how == "half":  # 16-bit values stored as a varint: decoded one by one
        return ("half-" + kind, _varint(buf, at)[0]) if kind in ("f2", "bf2") else None
    if how in (None, kind) and size == _WIDTH[kind]:
        return kind, at
    return None


def _values(buf: bytes, start: int, end: int) -> list[tuple[str, str, int]]:
    """[(tag, kind, offset)] of the scalar in one Summary.Value, or []."""
    tag, found = None, None
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 2:
            tag = bytes(buf[a:b]).decode("utf-8", "replace")
        elif number == 2 and wire == 5:
            found = ("f4", a)
        elif number == 8 and wire == 2:
            found = _tensor_scalar(buf, a, b)
    return [(tag, *found)] if tag is not None and found is not None else []


def _decode_event(buf: bytes, start: int, end: int) -> tuple[float, int, list, tuple | None]:
    """(wall_time, step, [(tag, kind, offset)], layout) of one Event payload.

    `layout` is (wall offset, step offset, step length, kind, value offset, tag), relative to
    `start`, when the event holds exactly one fixed-width scalar; otherwise None.
    """
    wall, step, wall_at, step_at, step_len, values = 0.0, 0, -1, -1, 0, []
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 1:
            wall, wall_at = struct.unpack_from("<d", buf, a)[0], a - start
        elif number == 2 and wire == 0:
            raw = _varint(buf, a)[0]
            step, step_at, step_len = (raw - (1 << 64) if raw >= 1 << 63 else raw), a - start, b - a
        elif number == 5 and wire == 2:
            for n, w, va, vb in _fields(buf, a, b):
                if n == 1 and w == 2:
                    values.extend(_values(buf, va, vb))
    layout = None
    if len(values) == 1 and values[0][1] in _WIDTH and wall_at >= 0 and step_len < 10:
        tag, kind, at = values[0]
        layout = (wall_at, step_at, step_len, kind, at - start, tag)
    return wall, step, values, layout


def _value(buf: bytes, kind: str, at: int) -> float:
    if kind.startswith("half-"):
        bits = at & 0xFFFF
        return struct.unpack("<e", struct.pack("<H", bits))[0] if kind == "half-f2" else _bf16_one(bits)
    if kind == "bf2":
        return _bf16_one(struct.unpack_from("<H", buf, at)[0])
    return struct.unpack_from({"f4": "<f", "f8": "<d", "f2": "<e"}[kind], buf, at)[0]


def _bf16_one(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


# ---- decoding records ----------------------------------------------------------------------------


class _Sink:
    """Collects decoded columns as arrays (vectorised groups) or single rows (one by one)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.parts: list[tuple] = []
        self.unreadable: list[tuple[int, int]] = []  # (record, offset): CRC holds, protobuf does not parse

    def code(self, tag: str) -> int:
        return self.codes.setdefault(tag, len(self.codes))

    def add(self, order, tag_code, step, value, wall) -> None:
        self.parts.append((order, tag_code, step, value, wall))

    def columns(self) -> tuple[list[str], dict[str, np.ndarray]]:
        import numpy as np

        names = ("order", "tag", "step", "value", "wall_time")
        dtypes = (np.int64, np.int32, np.int64, np.float64, np.float64)
        if not self.parts:
            return list(self.codes), {n: np.empty(0, t) for n, t in zip(names, dtypes, strict=True)}
        cols = {}
        for i, (name, dt) in enumerate(zip(names, dtypes, strict=True)):
            pieces = [np.broadcast_to(np.asarray(p[i], dt), np.shape(p[0])) for p in self.parts]
            cols[name] = np.concatenate(pieces)
        keep = np.argsort(cols["order"], kind="stable")
        return list(self.codes), {k: v[keep] for k, v in cols.items()}


def _decode_one(buf: bytes, start: int, end: int, order: int, sink: _Sink) -> tuple | None:
    """Decode one record row by row; return its layout for the vectorised path."""
    try:
        wall, step, values, layout = _decode_event(buf, start, end)
    except (ValueError, IndexError, struct.error):
        sink.unreadable.append((order, start - 12))
        return None
    for tag, kind, at in values:
        sink.add([order], sink.code(tag), step, _value(buf, kind, at), wall)
    return layout


def _decode_group(rows: np.ndarray, template: np.ndarray, orders: np.ndarray, layout: tuple, sink: _Sink) -> np.ndarray:
    """Decode the rows (records of one length) laid out like `template`; return a mask of the others."""
    import numpy as np

    wall_at, step_at, step_len, kind, value_at, tag = layout
    width = _WIDTH[kind]
    mask = np.full(rows.shape[1], 0xFF, np.uint8)
    mask[wall_at : wall_at + 8] = 0
    mask[value_at : value_at + width] = 0
    if step_at >= 0:
        mask[step_at : step_at + step_len] = 0x80  # same varint length, any value
    same = ~((rows ^ template) & mask).any(axis=1)
    hit = rows if same.all() else rows[same]
    wall = np.ascontiguousarray(hit[:, wall_at : wall_at + 8]).view("<f8").ravel()
    step = np.zeros(len(hit), np.int64)
    for i in range(step_len if step_at >= 0 else 0):
        step |= (hit[:, step_at + i] & 0x7F).astype(np.int64) << (7 * i)
    raw = np.ascontiguousarray(hit[:, value_at : value_at + width])
    if kind == "bf2":
        value = (raw.view("<u2").ravel().astype(np.uint32) << np.uint32(16)).view(np.float32)
    else:
        value = raw.view({"f4": "<f4", "f8": "<f8", "f2": "<f2"}[kind]).ravel()
    sink.add(orders if hit is rows else orders[same], sink.code(tag), step, value.astype(np.float64), wall)
    return ~same


def _decode_records(buf: bytes, starts: np.ndarray, lengths: np.ndarray, orders: np.ndarray, sink: _Sink) -> None:
    """Decode records grouped by length; each group is matched against layouts found in it."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    arr = np.frombuffer(buf, np.uint8)
    for length in _distinct(lengths).tolist():
        if length == 0:
            continue
        pick = np.flatnonzero(lengths == length)
        s, o = starts[pick], orders[pick]
        rows = sliding_window_view(arr, length)[s]
        layouts = 0
        while len(s):
            layout = _decode_one(buf, int(s[0]), int(s[0]) + length, int(o[0]), sink)
            if layout is None or layouts >= 64:
                s, o, rows = s[1:], o[1:], rows[1:]
                continue
            layouts += 1
            # the first row is the template, already decoded above: match the rest
            rest = _decode_group(rows[1:], rows[0], o[1:], layout, sink)
            s, o, rows = s[1:][rest], o[1:][rest], rows[1:][rest]


def decode(buf: Buffer) -> Decoded:
    """Every scalar in an event file's bytes (or memory map); damage is reported, never raised.

    A record whose payload CRC fails is skipped; a bad header, an absurd length or a truncated tail
    ends the file. The file is walked a chunk at a time, so memory does not grow with its size.
    """
    import numpy as np

    sink, damage, pos, first = _Sink(), [], 0, 0
    while True:
        offsets, stop = frame_records(buf, pos, pos + CHUNK)
        if offsets:
            offs, lengths, ok = _check_crcs(buf, offsets, stop)
            index = np.flatnonzero(ok)
            _decode_records(buf, offs[index] + 12, lengths[index], index + first, sink)
            damage += [Damage(first + i, int(offs[i]), "payload CRC mismatch; this record was skipped")
                       for i in np.flatnonzero(~ok).tolist()]
            first += len(offsets)
        if stop >= len(buf) or stop == pos or stop < pos + CHUNK:
            break
        pos = stop
    names, cols = sink.columns()
    damage += [Damage(i, at, "record is not a readable Event; skipped") for i, at in sink.unreadable]
    if stop < len(buf):
        damage.append(Damage(first, stop, _stop_reason(buf, stop)))
    return Decoded(names, cols, sorted(damage, key=lambda d: d.record))


def decode_file(path: Path) -> Decoded:
    """`decode` of a file: read whole up to CHUNK bytes, memory-mapped beyond (only the pages walked are read)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= CHUNK:
            return decode(f.read(size))
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return decode(mapped)
