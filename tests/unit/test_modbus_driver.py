"""The EPEVER Tracer Modbus driver, against a real pymodbus TCP server on 127.0.0.1.

The server runs the pymodbus simulator datastore (``SimDevice``/``SimData``) with the
controller's register map, in a background thread with its own asyncio loop. Decoding is also
tested on its own, without a server.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agents.drivers import Driver
from edge_agents.errors import DriverError
from edge_agents.modbus import (
    MANUAL_LOAD_COIL,
    REALTIME_COUNT,
    REALTIME_FIRST,
    EpeverModbusDriver,
    decode_controller_status,
    decode_reading,
    decode_realtime,
)
from protocol.catalogue import CATALOGUE, CHARGE_CONTROLLER_STATUS_BITS
from protocol.topics import DeviceClass
from runtime.local_services import free_port

NOW = datetime(2026, 11, 28, 18, tzinfo=UTC)
DEVICE_ID = 3
"""Not EPEVER's default 1, so a driver that ignores its device id would be caught."""
READ_COILS = 0x01
STATUS_MAXIMUM = 2 ** len(CHARGE_CONTROLLER_STATUS_BITS) - 1

# A winter evening: the lamp on, the battery cold and the load drawing too much current.
REALTIME_VALUES = {
    0x3100: 1852,  # PV voltage 18.52 V
    0x3101: 321,  # PV current 3.21 A
    0x3102: 5945,  # PV power 59.45 W, low word
    0x3103: 0,  # ... high word
    0x3104: 1327,  # battery voltage 13.27 V
    0x3105: 420,  # battery charging current 4.20 A
    0x3106: 5573,  # battery charging power 55.73 W (no catalogue metric)
    0x3107: 0,
    0x310C: 1320,  # load voltage 13.20 V (no catalogue metric)
    0x310D: 265,  # load current 2.65 A (no catalogue metric)
    0x310E: 3498,  # load power 34.98 W, low word
    0x310F: 0,
    0x3111: 2150,  # controller temperature 21.50 C (no catalogue metric)
    0x311A: 87,  # battery SOC 87 %
}
BATTERY_TEMPERATURE_CENTI_C = -350  # served as a signed INT16 by the server itself
BATTERY_STATUS_LOW_TEMPERATURE = 0x0020  # D7-D4 = 2
CHARGING_STATUS_BOOST_LOAD_OVER_CURRENT = 0x0001 | 0x0002 | 0x0008 | 0x0200  # D0, D1, D3-2=2, D9
DISCHARGING_STATUS_RUNNING = 0x0001
EXPECTED_READING = {
    "pv_voltage": 18.52,
    "pv_current": 3.21,
    "pv_power": 59.45,
    "battery_voltage": 13.27,
    "charge_current": 4.2,
    "lamp_power": 34.98,
    "battery_temperature": -3.5,
    "battery_soc": 87.0,
    "lamp_on": True,
    "controller_status": (
        1 << CHARGE_CONTROLLER_STATUS_BITS.index("battery_under_temperature")
        | 1 << CHARGE_CONTROLLER_STATUS_BITS.index("load_over_current")
    ),
}


def tracer_device(*, with_status_block: bool = True) -> SimDevice:
    """An EPEVER Tracer's registers as separate blocks (coils and input registers apart)."""
    realtime = [
        SimData(address, values=REALTIME_VALUES.get(address, 0), datatype=DataType.REGISTERS)
        for address in range(REALTIME_FIRST, REALTIME_FIRST + REALTIME_COUNT)
        if address != 0x3110
    ]
    realtime.append(SimData(0x3110, values=BATTERY_TEMPERATURE_CENTI_C, datatype=DataType.INT16))
    status = SimData(
        0x3200,
        values=[
            BATTERY_STATUS_LOW_TEMPERATURE,
            CHARGING_STATUS_BOOST_LOAD_OVER_CURRENT,
            DISCHARGING_STATUS_RUNNING,
        ],
        datatype=DataType.REGISTERS,
    )
    return SimDevice(
        DEVICE_ID,
        simdata=(
            [SimData(0x0000, values=[False] * 16, datatype=DataType.BITS)],  # coils
            [SimData(0x2000, values=[False] * 16, datatype=DataType.BITS)],  # discrete inputs
            [SimData(0x903D, values=0, datatype=DataType.UINT16)],  # load mode: manual
            [*realtime, status] if with_status_block else realtime,  # input registers
        ),
    )


@dataclass
class TracerServer:
    """A pymodbus TCP server serving one simulated Tracer, on its own loop and thread."""

    port: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    server: ModbusTcpServer

    @classmethod
    def start(cls, device: SimDevice, port: int | None = None) -> TracerServer:
        port = port or free_port()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="modbus-test-server")
        thread.start()

        async def listen() -> ModbusTcpServer:
            server = ModbusTcpServer(device, address=("127.0.0.1", port))
            await server.serve_forever(background=True)
            return server

        try:
            server = asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=5)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
            raise
        return cls(port, loop, thread, server)

    def coils(self, address: int, count: int) -> list[bool]:
        """The coils as the server holds them (not through the driver's client)."""
        values = asyncio.run_coroutine_threadsafe(
            self.server.async_getValues(DEVICE_ID, READ_COILS, address, count), self.loop
        ).result(timeout=5)
        return [bool(value) for value in values]

    def stop(self) -> None:
        if self.loop.is_closed():
            return

        async def shut_down() -> None:
            await self.server.shutdown()  # type: ignore[no-untyped-call]  # unannotated upstream
            pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.loop.close()


@pytest.fixture
def tracer() -> Iterator[TracerServer]:
    server = TracerServer.start(tracer_device())
    yield server
    server.stop()


@pytest.fixture
def driver(tracer: TracerServer) -> Iterator[EpeverModbusDriver]:
    with EpeverModbusDriver(
        "127.0.0.1", tracer.port, device_id=DEVICE_ID, timeout_s=1.0, retries=0
    ) as driver:
        yield driver


def test_the_driver_satisfies_the_driver_protocol(driver: EpeverModbusDriver) -> None:
    as_protocol: Driver = driver
    assert as_protocol is driver


def test_reads_exactly_the_served_values_as_catalogue_metrics(
    driver: EpeverModbusDriver,
) -> None:
    reading = driver.read(NOW)
    assert reading == EXPECTED_READING
    assert type(reading["lamp_on"]) is bool
    assert type(reading["controller_status"]) is int
    streetlight = CATALOGUE[DeviceClass.STREETLIGHT].metrics
    assert set(reading) <= set(streetlight)


def test_reads_again_on_the_same_connection(driver: EpeverModbusDriver) -> None:
    assert driver.read(NOW) == driver.read(NOW)


def test_lamp_level_switches_the_load_coil_on_and_off(
    tracer: TracerServer, driver: EpeverModbusDriver
) -> None:
    assert tracer.coils(0, 4) == [False, False, False, False]
    driver.actuate({"lamp_level": 40.0}, NOW)
    assert tracer.coils(MANUAL_LOAD_COIL, 1) == [True]
    assert tracer.coils(0, 4) == [False, False, True, False], "only coil 0x0002 may change"
    driver.actuate({"lamp_level": 100.0}, NOW)
    assert tracer.coils(MANUAL_LOAD_COIL, 1) == [True]
    driver.actuate({"lamp_level": 0.0}, NOW)
    assert tracer.coils(0, 4) == [False, False, False, False]


def test_outputs_without_lamp_level_write_nothing(
    tracer: TracerServer, driver: EpeverModbusDriver
) -> None:
    driver.actuate({"brightness_level": 50.0}, NOW)
    assert tracer.coils(0, 4) == [False, False, False, False]


@pytest.mark.parametrize("level", [-1.0, 100.5, float("nan")])
def test_a_lamp_level_outside_0_to_100_is_refused_before_any_write(
    tracer: TracerServer, driver: EpeverModbusDriver, level: float
) -> None:
    with pytest.raises(ValueError, match="lamp_level"):
        driver.actuate({"lamp_level": level}, NOW)
    assert tracer.coils(MANUAL_LOAD_COIL, 1) == [False]


def test_a_modbus_exception_names_the_register_block() -> None:
    server = TracerServer.start(tracer_device(with_status_block=False))
    try:
        with (
            EpeverModbusDriver(
                "127.0.0.1", server.port, device_id=DEVICE_ID, timeout_s=1.0, retries=0
            ) as driver,
            pytest.raises(DriverError) as caught,
        ):
            driver.read(NOW)
    finally:
        server.stop()
    message = str(caught.value)
    assert "input registers 0x3200..0x3202 (status words)" in message
    assert "ILLEGAL_ADDRESS (2)" in message
    assert f"127.0.0.1:{server.port}" in message


def test_a_stopped_server_gives_a_driver_error_then_recovers_when_it_is_back() -> None:
    server = TracerServer.start(tracer_device())
    with EpeverModbusDriver(
        "127.0.0.1", server.port, device_id=DEVICE_ID, timeout_s=1.0, retries=0
    ) as driver:
        try:
            assert driver.read(NOW) == EXPECTED_READING
        finally:
            server.stop()
        for _ in range(2):  # the open connection breaks, then reconnecting is refused
            with pytest.raises(DriverError, match=r"0x3100\.\.0x311A.*no connection") as caught:
                driver.read(NOW)
            assert caught.value.__cause__ is not None
        with pytest.raises(DriverError, match=r"coil 0x0002 \(manual load switch\) := 1"):
            driver.actuate({"lamp_level": 10.0}, NOW)
        restarted = TracerServer.start(tracer_device(), port=server.port)
        try:
            assert driver.read(NOW) == EXPECTED_READING
        finally:
            restarted.stop()


def test_a_wrong_port_gives_a_driver_error_saying_where() -> None:
    port = free_port()  # nothing listens there
    with (
        EpeverModbusDriver("127.0.0.1", port, timeout_s=1.0, retries=0) as driver,
        pytest.raises(DriverError) as caught,
    ):
        driver.read(NOW)
    message = str(caught.value)
    assert f"EPEVER controller 127.0.0.1:{port} (device id 1)" in message
    assert "reading input registers 0x3100..0x311A (real-time data) failed: no connection" in (
        message
    )


def test_a_silent_device_times_out_with_a_driver_error() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with (
            EpeverModbusDriver("127.0.0.1", port, timeout_s=0.3, retries=0) as driver,
            pytest.raises(DriverError, match="no valid answer"),
        ):
            driver.read(NOW)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("device_id", [0, 248])
def test_a_device_id_outside_1_to_247_is_refused(device_id: int) -> None:
    with pytest.raises(ValueError, match="device id"):
        EpeverModbusDriver("127.0.0.1", 502, device_id=device_id)


# --- pure decoding, no server -------------------------------------------------------------


def realtime_block(**by_address: int) -> list[int]:
    """A zeroed real-time block with the given registers set (keys like ``r3102``)."""
    block = [0] * REALTIME_COUNT
    for key, value in by_address.items():
        block[int(key[1:], 16) - REALTIME_FIRST] = value
    return block


@pytest.mark.parametrize(
    ("low", "high", "watts"),
    [
        (0x0000, 0x0000, 0.0),
        (0xFFFF, 0x0000, 655.35),
        (0x0000, 0x0001, 655.36),
        (0x1170, 0x0001, 700.0),  # 70_000 hundredths: above the catalogue's 600 W, kept
        (0xFFFF, 0xFFFF, 42_949_672.95),
    ],
)
def test_32_bit_powers_are_low_word_first(low: int, high: int, watts: float) -> None:
    reading = decode_realtime(realtime_block(r3102=low, r3103=high, r310E=low, r310F=high))
    assert reading["pv_power"] == pytest.approx(watts)
    assert reading["lamp_power"] == pytest.approx(watts)


@pytest.mark.parametrize(
    ("register", "celsius"),
    [
        (0x0000, 0.0),
        (0xFEA2, -3.5),
        (0xFFFF, -0.01),
        (0x8000, -327.68),
        (0x7FFF, 327.67),
        (0x1F40, 80.0),
    ],
)
def test_battery_temperature_is_signed(register: int, celsius: float) -> None:
    reading = decode_realtime(realtime_block(r3110=register))
    assert reading["battery_temperature"] == pytest.approx(celsius)


def test_scales_and_keeps_out_of_range_values_as_read() -> None:
    reading = decode_realtime(realtime_block(r3100=0xFFFF, r3104=1327, r3105=1, r311A=255))
    assert reading["pv_voltage"] == pytest.approx(655.35)
    assert reading["battery_voltage"] == pytest.approx(13.27)
    assert reading["charge_current"] == pytest.approx(0.01)
    assert reading["battery_soc"] == 255.0


def test_a_block_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="real-time block"):
        decode_realtime([0] * (REALTIME_COUNT - 1))
    with pytest.raises(ValueError, match="status block"):
        decode_reading([0] * REALTIME_COUNT, [0, 0])


@pytest.mark.parametrize(
    ("battery", "charging", "discharging", "bits"),
    [
        (0x0001, 0, 0, {"battery_over_voltage"}),
        (0x0002, 0, 0, {"battery_under_voltage"}),
        (0x0003, 0, 0, {"low_voltage_disconnect"}),
        (0x0010, 0, 0, {"battery_over_temperature"}),
        (0x0020, 0, 0, {"battery_under_temperature"}),
        (0x0011, 0, 0, {"battery_over_voltage", "battery_over_temperature"}),
        (0, 0x8000, 0, {"pv_over_voltage"}),
        (0, 1 << 13, 0, {"charge_mosfet_fault"}),
        (0, 1 << 12, 0, {"charge_mosfet_fault"}),
        (0, 1 << 11, 0, {"charge_mosfet_fault"}),
        (0, 1 << 8, 0, {"load_short_circuit"}),
        (0, 0, 1 << 11, {"load_short_circuit"}),
        (0, 1 << 9, 0, {"load_over_current"}),
        (0, 0, 0x3000, {"load_over_current"}),
    ],
)
def test_epever_conditions_set_the_documented_status_bits(
    battery: int, charging: int, discharging: int, bits: set[str]
) -> None:
    status = decode_controller_status(battery, charging, discharging)
    assert {
        name for index, name in enumerate(CHARGE_CONTROLLER_STATUS_BITS) if status >> index & 1
    } == bits


@pytest.mark.parametrize(
    ("battery", "charging", "discharging"),
    [
        (0, 0, 0),
        (0, 0x0001 | 0x000C, 0x0001),  # running, equalizing, load on
        (0, 0x4000, 0),  # no PV input: night, not a fault
        (0, 0, 0x2000),  # rated output power, not overload
        (0x0004 | 0x0100 | 0x8000, 0x0002 | 0x0010 | 0x0080 | 0x0400, 0x0002),  # unmapped
    ],
)
def test_normal_and_unmapped_conditions_set_no_bit(
    battery: int, charging: int, discharging: int
) -> None:
    assert decode_controller_status(battery, charging, discharging) == 0


@given(st.lists(st.integers(0, 0xFFFF), min_size=3, max_size=3))
def test_any_status_words_give_a_status_within_the_catalogue(words: list[int]) -> None:
    assert 0 <= decode_controller_status(*words) <= STATUS_MAXIMUM


def test_lamp_on_follows_the_discharging_running_bit() -> None:
    block = [0] * REALTIME_COUNT
    assert decode_reading(block, [0, 0, 0x0001])["lamp_on"] is True
    assert decode_reading(block, [0, 0, 0x0000])["lamp_on"] is False
    assert decode_reading(block, [0, 0, 0xFFFE])["lamp_on"] is False
