"""TensorBoard-compatible scalar event files, written without TensorFlow or TensorBoard installed.

The format is TensorBoard's own (tensorboard/summary/writer/record_writer.py and event_file_writer.py):
a TFRecord file of `Event` protocol-buffer messages. Each record is
`uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)` (little endian),
with CRC-32C (Castagnoli) masked as `((crc >> 15 | crc << 17) + 0xa282ead8) mod 2**32`.
The first event carries `file_version = "brain.Event:2"`; each scalar is an `Event` (wall_time = 1,
double; step = 2, int64; summary = 5) whose `Summary.Value` has tag = 1 and simple_value = 2 (float).
TensorBoard picks up every file named `*tfevents*` under `--logdir`.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`; crc32c(b"123456789") == 0xE3069283."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int = 0, *, file_version: str | None = None,
                 scalars: dict[str, float] | None = None) -> bytes:
    """One serialised `tensorboard.Event` message."""
    out = bytearray(_varint(1 << 3 | 1) + struct.pack("<d", wall_time))
    if step:
        out += _varint(2 << 3 | 0) + _varint(int(step))
    if file_version is not None:
        out += _field_bytes(3, file_version.encode())
    if scalars:
        summary = b"".join(
            _field_bytes(1, _field_bytes(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", float(value)))
            for tag, value in scalars.items()
        )
        out += _field_bytes(5, summary)
    return bytes(out)


def frame_record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class ScalarWriter:
    """Appends scalars to `DIR/events.out.tfevents.<time>.<host>.<pid>` and flushes each call.

    Use as a context manager or call `close()`.
    """

    def __init__(self, log_dir: str | Path) -> None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = log_dir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.0"
        self._file = open(self.path, "ab")
        self._file.write(frame_record(encode_event(now, file_version="brain.Event:2")))
        self._file.flush()

    def add_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """Writes one event holding every tag -> value of `scalars` at `step`."""
        self._file.write(frame_record(encode_event(time.time(), step, scalars=scalars)))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ScalarWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_scalars(path: str | Path) -> list[tuple[int, str, float]]:
    """Reads back (step, tag, value) from an event file written by `ScalarWriter`, checking every CRC.

    Raises:
        ValueError: a truncated record or a CRC mismatch.
    """
    data = Path(path).read_bytes()
    found: list[tuple[int, str, float]] = []
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        header_crc = data[pos + 8:pos + 12]
        if len(header) < 8 or len(header_crc) < 4 or struct.unpack("<I", header_crc)[0] != masked_crc32c(header):
            raise ValueError(f"{path}: damaged record header at byte {pos}")
        (length,) = struct.unpack("<Q", header)
        body = data[pos + 12:pos + 12 + length]
        crc = data[pos + 12 + length:pos + 16 + length]
        if len(body) < length or len(crc) < 4 or struct.unpack("<I", crc)[0] != masked_crc32c(body):
            raise ValueError(f"{path}: damaged record at byte {pos}")
        pos += 16 + length
        found.extend(_parse_event(body))
    return found


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes):
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _parse_event(body: bytes) -> list[tuple[int, str, float]]:
    step, values = 0, []
    for number, value in _fields(body):
        if number == 2:
            step = value
        elif number == 5:
            for _n, item in _fields(value):
                tag, scalar = "", 0.0
                for n, v in _fields(item):
                    if n == 1:
                        tag = v.decode()
                    elif n == 2:
                        (scalar,) = struct.unpack("<f", v)
                values.append((tag, scalar))
    return [(step, tag, value) for tag, value in values]
