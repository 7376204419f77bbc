"""Driver for an EPEVER Tracer (AN/BN) solar charge controller, over Modbus TCP or RTU.

The register map is EPEVER's "LS-B / Tracer-A / Tracer-B series" Modbus protocol: real-time
data in input registers 0x3100..0x311A, status words in input registers 0x3200..0x3202 (read
with function 0x04), the manual load switch in coil 0x0002 (function 0x05). Addresses are the
protocol's zero-based ones. Voltages, currents and powers are unsigned fixed point with two
decimals (value * 100); powers are 32-bit, low word at the lower address; temperatures are
signed (two's complement) degrees Celsius * 100.

Two block reads per poll, whatever the number of metrics. Decoding is done by pure functions
(:func:`decode_realtime`, :func:`decode_controller_status`, :func:`decode_reading`) so it can
be tested without a bus; :class:`EpeverModbusDriver` only moves registers.

Hardware notes that shape this driver:

- the Tracer switches its load output, it does not dim it. Dimming on our poles is done by the
  LED driver, so ``lamp_level`` is applied as on (> 0) or off (0) and ``dimming_level`` is not
  reported;
- the manual load coil only takes effect when the controller's load control mode (holding
  register 0x903D) is "manual" (0). Commissioning sets it; the driver does not change it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Final, Self

from pymodbus.client import ModbusBaseSyncClient, ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from edge_agents.drivers import Outputs, Reading
from edge_agents.errors import DriverError
from protocol.catalogue import CHARGE_CONTROLLER_STATUS_BITS

DEFAULT_TCP_PORT: Final = 502
"""Modbus TCP port of an RS485-to-Ethernet gateway in front of the controller."""
DEFAULT_DEVICE_ID: Final = 1
"""EPEVER's factory Modbus device (slave) id."""
MAX_DEVICE_ID: Final = 247
"""Highest Modbus device id a serial bus allows (ids 1..247)."""
DEFAULT_TIMEOUT_S: Final = 2.0
"""How long to wait for a connection or an answer [s]."""
DEFAULT_RETRIES: Final = 1
"""Requests resent after a timeout before giving up (RS485 loses the odd frame)."""

CENTI: Final = 100.0
"""EPEVER's fixed-point scale: a register holds the value times 100."""
WORD_BITS: Final = 16
WORD_MASK: Final = 0xFFFF

REALTIME_FIRST: Final = 0x3100
REALTIME_LAST: Final = 0x311A
REALTIME_COUNT: Final = REALTIME_LAST - REALTIME_FIRST + 1
STATUS_FIRST: Final = 0x3200
STATUS_COUNT: Final = 3
BATTERY_STATUS: Final = 0x3200
CHARGING_STATUS: Final = 0x3201
DISCHARGING_STATUS: Final = 0x3202
MANUAL_LOAD_COIL: Final = 0x0002
"""Coil: load output on (1) or off (0) when the load control mode is manual."""

LAMP_LEVEL_MAX: Final = 100.0
"""Largest ``lamp_level`` an agent may command [%]."""


@dataclass(frozen=True, slots=True)
class RealtimeRegister:
    """One value of the real-time block and the catalogue metric it becomes."""

    address: int
    """Register address; the low word for a 32-bit value."""
    metric: str
    """Catalogue metric name (streetlight class)."""
    unit: str
    words: int = 1
    """1 for 16-bit, 2 for 32-bit (low word first)."""
    signed: bool = False
    scale: float = CENTI
    """The register holds the value times this."""

    def decode(self, block: Sequence[int]) -> float:
        """This value in :attr:`unit`, from the registers of the whole real-time block."""
        offset = self.address - REALTIME_FIRST
        raw = 0
        for index, word in enumerate(block[offset : offset + self.words]):
            raw |= (word & WORD_MASK) << (WORD_BITS * index)
        width = WORD_BITS * self.words
        if self.signed and raw >= 1 << (width - 1):
            raw -= 1 << width
        return raw / self.scale


REALTIME_REGISTERS: Final = (
    RealtimeRegister(0x3100, "pv_voltage", "V"),
    RealtimeRegister(0x3101, "pv_current", "A"),
    RealtimeRegister(0x3102, "pv_power", "W", words=2),
    RealtimeRegister(0x3104, "battery_voltage", "V"),
    RealtimeRegister(0x3105, "charge_current", "A"),
    RealtimeRegister(0x310E, "lamp_power", "W", words=2),
    RealtimeRegister(0x3110, "battery_temperature", "C", signed=True),
    RealtimeRegister(0x311A, "battery_soc", "%", scale=1.0),
)
"""What the driver reports from the real-time block. The block also holds values the
catalogue has no metric for (charging power 0x3106/0x3107, load voltage 0x310C, load current
0x310D, controller temperature 0x3111); they are read with the block and not reported."""

# 0x3200 battery status
_BATTERY_VOLTAGE_FIELD: Final = 0x000F  # D3-D0
_BATTERY_OVER_VOLTAGE: Final = 0x1
_BATTERY_UNDER_VOLTAGE: Final = 0x2
_BATTERY_LOW_VOLTAGE_DISCONNECT: Final = 0x3  # "over discharge" in later revisions
_BATTERY_TEMPERATURE_FIELD: Final = 0x00F0  # D7-D4
_BATTERY_OVER_TEMPERATURE: Final = 0x1
_BATTERY_LOW_TEMPERATURE: Final = 0x2
# 0x3201 charging equipment status
_PV_INPUT_FIELD: Final = 0xC000  # D15-D14
_PV_INPUT_HIGHER_VOLTAGE: Final = 0x2
_CHARGING_MOSFET_SHORT: Final = 1 << 13
_CHARGING_OR_ANTI_REVERSE_MOSFET_OPEN: Final = 1 << 12
_ANTI_REVERSE_MOSFET_SHORT: Final = 1 << 11
_LOAD_OVER_CURRENT: Final = 1 << 9
_LOAD_SHORT: Final = 1 << 8
# 0x3202 discharging equipment status
_DISCHARGING_RUNNING: Final = 1 << 0
_OUTPUT_POWER_FIELD: Final = 0x3000  # D13-D12
_OUTPUT_OVERLOAD: Final = 0x3
_OUTPUT_SHORT_CIRCUIT: Final = 1 << 11

_STATUS_BIT: Final = {name: index for index, name in enumerate(CHARGE_CONTROLLER_STATUS_BITS)}


def _field(word: int, mask: int) -> int:
    """The value of the bits of ``word`` under ``mask``, shifted down."""
    return (word & mask) >> ((mask & -mask).bit_length() - 1)


def decode_controller_status(
    battery_status: int, charging_status: int, discharging_status: int
) -> int:
    """``controller_status`` from EPEVER's three status words (0x3200, 0x3201, 0x3202).

    Bits follow :data:`protocol.catalogue.CHARGE_CONTROLLER_STATUS_BITS`; ``docs/modbus.md``
    lists which EPEVER condition sets which bit. ``pv_reverse_polarity``,
    ``controller_over_temperature`` and ``rtc_fault`` have no counterpart in these words and
    are never set.
    """
    battery_voltage = _field(battery_status, _BATTERY_VOLTAGE_FIELD)
    battery_temperature = _field(battery_status, _BATTERY_TEMPERATURE_FIELD)
    conditions = {
        "battery_over_voltage": battery_voltage == _BATTERY_OVER_VOLTAGE,
        "battery_under_voltage": battery_voltage == _BATTERY_UNDER_VOLTAGE,
        "low_voltage_disconnect": battery_voltage == _BATTERY_LOW_VOLTAGE_DISCONNECT,
        "battery_over_temperature": battery_temperature == _BATTERY_OVER_TEMPERATURE,
        "battery_under_temperature": battery_temperature == _BATTERY_LOW_TEMPERATURE,
        "pv_over_voltage": _field(charging_status, _PV_INPUT_FIELD) == _PV_INPUT_HIGHER_VOLTAGE,
        "charge_mosfet_fault": bool(
            charging_status
            & (
                _CHARGING_MOSFET_SHORT
                | _CHARGING_OR_ANTI_REVERSE_MOSFET_OPEN
                | _ANTI_REVERSE_MOSFET_SHORT
            )
        ),
        "load_short_circuit": bool(
            charging_status & _LOAD_SHORT or discharging_status & _OUTPUT_SHORT_CIRCUIT
        ),
        "load_over_current": bool(
            charging_status & _LOAD_OVER_CURRENT
            or _field(discharging_status, _OUTPUT_POWER_FIELD) == _OUTPUT_OVERLOAD
        ),
    }
    status = 0
    for name, present in conditions.items():
        if present:
            status |= 1 << _STATUS_BIT[name]
    return status


def decode_realtime(block: Sequence[int]) -> Reading:
    """The measured metrics from the registers 0x3100..0x311A, in catalogue units.

    Values are scaled and sign-converted, never clipped: judging them is the platform's job.
    """
    if len(block) != REALTIME_COUNT:
        raise ValueError(f"the real-time block has {REALTIME_COUNT} registers, got {len(block)}")
    return {register.metric: register.decode(block) for register in REALTIME_REGISTERS}


def decode_reading(realtime: Sequence[int], status: Sequence[int]) -> Reading:
    """A whole streetlight reading from the real-time block and the three status words."""
    if len(status) != STATUS_COUNT:
        raise ValueError(f"the status block has {STATUS_COUNT} registers, got {len(status)}")
    battery_status, charging_status, discharging_status = status
    reading = decode_realtime(realtime)
    reading["lamp_on"] = bool(discharging_status & _DISCHARGING_RUNNING)
    reading["controller_status"] = decode_controller_status(
        battery_status, charging_status, discharging_status
    )
    return reading


def _exception_name(code: int) -> str:
    try:
        return f"{ExcCodes(code).name} ({code})"
    except ValueError:
        return f"code {code}"


class EpeverModbusDriver:
    """A :class:`edge_agents.drivers.Driver` for one EPEVER Tracer on Modbus.

    Not thread-safe: one agent loop owns it. The connection is opened on first use and
    reopened after any failure.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_TCP_PORT,
        *,
        device_id: int = DEFAULT_DEVICE_ID,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        """Talk Modbus TCP to ``host``:``port``, usually an RS485 gateway.

        :param device_id: Modbus device (slave/unit) id of the controller [-]
        :param timeout_s: wait for a connection or an answer [s]; a failing request takes up
            to ``timeout_s * (retries + 1)``
        :param retries: resends after a timeout [-]
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=retries)
        self._attach(client, device_id, f"{host}:{port}")

    @classmethod
    def with_client(
        cls, client: ModbusBaseSyncClient, *, device_id: int = DEFAULT_DEVICE_ID
    ) -> Self:
        """A driver over a client built by the caller, e.g. RTU on the controller's RS485 port.

        ``ModbusSerialClient("/dev/ttyUSB0", baudrate=115200)`` matches the Tracer's factory
        settings (115200 bit/s, 8N1); it needs pyserial (``pip install 'pymodbus[serial]'``).
        """
        driver = cls.__new__(cls)
        driver._attach(client, device_id, str(client))
        return driver

    def _attach(self, client: ModbusBaseSyncClient, device_id: int, where: str) -> None:
        if not 1 <= device_id <= MAX_DEVICE_ID:
            raise ValueError(f"a Modbus device id is 1..{MAX_DEVICE_ID}, got {device_id}")
        self._client = client
        self._device_id = device_id
        self._where = f"EPEVER controller {where} (device id {device_id})"

    def read(self, now: datetime) -> Reading:
        """Measure the controller now: two block reads, decoded by :func:`decode_reading`."""
        realtime = self._read_input_registers(REALTIME_FIRST, REALTIME_COUNT, "real-time data")
        status = self._read_input_registers(STATUS_FIRST, STATUS_COUNT, "status words")
        return decode_reading(realtime, status)

    def actuate(self, outputs: Outputs, now: datetime) -> None:
        """Switch the load on if ``lamp_level`` [%] is above 0, off if it is 0.

        Other outputs are not for this device and are ignored, as is a missing ``lamp_level``.
        The level itself is not applied: the controller has no dimming (see module notes).
        """
        level = outputs.get("lamp_level")
        if level is None:
            return
        if not 0 <= level <= LAMP_LEVEL_MAX:
            raise ValueError(f"lamp_level must be 0..{LAMP_LEVEL_MAX:g} %, got {level}")
        self._write_coil(MANUAL_LOAD_COIL, level > 0, "manual load switch")

    def close(self) -> None:
        """Close the connection (it reopens on the next call)."""
        self._disconnect()

    def _disconnect(self) -> None:
        # pymodbus leaves close() unannotated; it takes and returns nothing.
        self._client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _read_input_registers(self, first: int, count: int, what: str) -> list[int]:
        block = f"input registers 0x{first:04X}..0x{first + count - 1:04X} ({what})"
        response = self._request(
            block,
            lambda: self._client.read_input_registers(
                first, count=count, device_id=self._device_id
            ),
        )
        if len(response.registers) != count:
            self._disconnect()
            raise DriverError(
                f"{self._where}: reading {block} returned {len(response.registers)} registers"
                f" instead of {count}; is this an EPEVER Tracer?"
            )
        return list(response.registers)

    def _write_coil(self, address: int, value: bool, what: str) -> None:
        self._request(
            f"coil 0x{address:04X} ({what}) := {int(value)}",
            lambda: self._client.write_coil(address, value, device_id=self._device_id),
            verb="writing",
        )

    def _request(
        self, target: str, send: Callable[[], ModbusPDU], *, verb: str = "reading"
    ) -> ModbusPDU:
        try:
            response = send()
        except ConnectionException as error:
            self._disconnect()
            raise DriverError(
                f"{self._where}: {verb} {target} failed: no connection ({error}); check the"
                " address and port, and that the gateway is powered and reachable"
            ) from error
        except ModbusIOException as error:
            self._disconnect()
            raise DriverError(
                f"{self._where}: {verb} {target} failed: no valid answer ({error}); check the"
                " device id, the RS485 wiring and the baud rate"
            ) from error
        except (ModbusException, OSError) as error:
            self._disconnect()
            raise DriverError(f"{self._where}: {verb} {target} failed: {error}") from error
        if response.isError():
            raise DriverError(
                f"{self._where}: {verb} {target} refused with Modbus exception"
                f" {_exception_name(response.exception_code)}; check that the controller"
                " model supports this register map"
            )
        return response
