"""Bulk loading of telemetry: PostgreSQL's binary COPY format built with numpy, no row loop.

Months of a whole fleet's telemetry (tens of millions of rows) go in as fast as the server
takes them: each block of rows (every device of a class over some instants) becomes one
structured numpy array laid out exactly as COPY BINARY expects, so Python never touches a row.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from protocol.catalogue import CATALOGUE
from protocol.topics import DeviceClass

COPY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2
COPY_TRAILER: Final = b"\xff\xff"
POSTGRES_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_EPOCH_OFFSET_US: Final = int(POSTGRES_EPOCH.timestamp()) * 1_000_000


def postgres_microseconds(unix_seconds: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Unix times [s] as PostgreSQL timestamps: microseconds since 2000-01-01 UTC."""
    result: npt.NDArray[np.int64] = unix_seconds.astype(np.int64) * 1_000_000 - _EPOCH_OFFSET_US
    return result


def encode_rows(
    device_ids: Sequence[str],
    unix_seconds: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    present: npt.NDArray[np.bool_] | None = None,
) -> bytes:
    """COPY BINARY rows (no signature, no trailer) of ``(ts, device_id, metric...)``.

    values: shape (devices, instants, metrics), in the class's catalogue order; NaN is
    stored as NULL. present: shape (devices, instants), False leaves that row out.
    Rows come device by device, each in time order, which suits the primary key.
    """
    devices, instants, metrics = values.shape
    if len(device_ids) != devices or len(unix_seconds) != instants:
        raise ValueError("device_ids and unix_seconds must match the shape of values")
    stamps = postgres_microseconds(unix_seconds)
    blocks = []
    by_length: dict[int, list[int]] = {}
    for index, device_id in enumerate(device_ids):
        by_length.setdefault(len(device_id.encode()), []).append(index)
    for length, members in by_length.items():
        null = np.isnan(values[members])
        if null.any():  # NULLs change a row's size: take the slow, general path
            blocks.append(_encode_with_nulls(device_ids, members, stamps, values, present))
            continue
        # Interleave each metric's size and value: (size, value) pairs in order.
        pair = np.dtype([("size", ">i4"), ("value", ">f8")])
        row_type = np.dtype(
            [
                ("fields", ">i2"),
                ("ts_size", ">i4"),
                ("ts", ">i8"),
                ("id_size", ">i4"),
                ("id", f"S{length}"),
                ("metrics", pair, (metrics,)),
            ]
        )
        rows = np.empty((len(members), instants), dtype=row_type)
        rows["fields"] = 2 + metrics
        rows["ts_size"] = 8
        rows["ts"] = stamps[np.newaxis, :]
        rows["id_size"] = length
        rows["id"] = np.array([device_ids[i].encode() for i in members])[:, np.newaxis]
        rows["metrics"]["size"] = 8
        rows["metrics"]["value"] = values[members]
        if present is not None:
            blocks.append(rows[present[members]].tobytes())
        else:
            blocks.append(rows.tobytes())
    return b"".join(blocks)


def _encode_with_nulls(
    device_ids: Sequence[str],
    members: list[int],
    stamps: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    present: npt.NDArray[np.bool_] | None,
) -> bytes:
    out = bytearray()
    metrics = values.shape[2]
    for device in members:
        encoded = device_ids[device].encode()
        for instant, stamp in enumerate(stamps):
            if present is not None and not present[device, instant]:
                continue
            out += (2 + metrics).to_bytes(2, "big") + (8).to_bytes(4, "big")
            out += int(stamp).to_bytes(8, "big", signed=True)
            out += len(encoded).to_bytes(4, "big") + encoded
            for value in values[device, instant]:
                if np.isnan(value):
                    out += b"\xff\xff\xff\xff"
                else:
                    out += (8).to_bytes(4, "big") + np.array(value, dtype=">f8").tobytes()
    return bytes(out)


def copy_telemetry(
    connection: psycopg.Connection, device_class: DeviceClass, blocks: Iterable[bytes]
) -> None:
    """COPY encoded row blocks into the class's telemetry table, in the current transaction."""
    metrics = tuple(CATALOGUE[device_class].metrics)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(f"telemetry_{device_class}"),
        sql.SQL(", ").join(map(sql.Identifier, ("ts", "device_id", *metrics))),
    )
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(COPY_SIGNATURE)
        for block in blocks:
            copy.write(block)
        copy.write(COPY_TRAILER)


class ParallelCopy:
    """Threads that COPY encoded blocks, each on its own connection, one transaction a block.

    Several connections let the server insert on several cores while the caller prepares
    the next blocks; the queue is short, so memory stays bounded by a few blocks.
    """

    def __init__(self, database_url: str, connections: int) -> None:
        self.work: queue.Queue[tuple[DeviceClass, bytes] | None] = queue.Queue(connections * 2)
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, args=(database_url,), daemon=True)
            for _ in range(connections)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, database_url: str) -> None:
        try:
            with psycopg.connect(database_url) as connection:
                while (item := self.work.get()) is not None:
                    device_class, body = item
                    with connection.transaction():
                        copy_telemetry(connection, device_class, [body])
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
            self.errors.append(error)
            while self.work.get() is not None:  # keep unblocking the producer
                pass

    def put(self, device_class: DeviceClass, body: bytes) -> None:
        """Queue a block (waits while the queue is full); raise a writer's error."""
        if self.errors:
            raise self.errors[0]
        self.work.put((device_class, body))

    def close(self) -> None:
        """Wait for every queued block to be committed; raise a writer's error."""
        for _ in self._threads:
            self.work.put(None)
        for thread in self._threads:
            thread.join()
        if self.errors:
            raise self.errors[0]
