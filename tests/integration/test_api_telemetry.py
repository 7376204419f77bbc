"""Telemetry through the API: latest values, and ranges of a device or a group read from the
raw rows, the hourly or the daily rollups, which must agree with each other and with the
samples written."""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from protocol.topics import DeviceClass
from storage.queries import latest_values
from storage.rollups import refresh_period
from storage.writer import BatchWriter, SampleRows, StorageBatch, telemetry_rows
from tests.integration.api_fixtures import ApiSession

pytestmark = pytest.mark.integration

RANGE = "/api/v1/telemetry"
MONDAY = datetime(2026, 11, 16, tzinfo=UTC)
DAYS = 3
LIGHTS = ("sl-menzel-n-001", "sl-menzel-n-002", "sl-menzel-n-003")
Sample = tuple[datetime, float]


def _samples() -> dict[str, dict[str, list[Sample]]]:
    """Battery charge every 7 minutes (offset per device), lamp power every other sample."""
    rng = random.Random(6)
    found: dict[str, dict[str, list[Sample]]] = {}
    for index, device in enumerate(LIGHTS):
        at = MONDAY + timedelta(minutes=2 * index + 1)
        series: dict[str, list[Sample]] = {"battery_soc": [], "lamp_power": []}
        step = 0
        while at < MONDAY + timedelta(days=DAYS):
            series["battery_soc"].append((at, round(rng.uniform(20, 100), 2)))
            if step % 2 == 0:
                series["lamp_power"].append((at, round(rng.uniform(0, 60), 1)))
            at += timedelta(minutes=7)
            step += 1
        found[device] = series
    return found


SAMPLES = _samples()


def _window(start: datetime, end: datetime) -> dict[str, str]:
    """The ``from`` and ``to`` query parameters (``from`` is a Python keyword)."""
    return {"from": start.isoformat(), "to": end.isoformat()}


FIRST_DAY = _window(MONDAY, MONDAY + timedelta(days=1))
EVERY_DAY = _window(MONDAY, MONDAY + timedelta(days=DAYS))


@pytest.fixture
def filled(api: ApiSession) -> ApiSession:
    """The API on a database holding :data:`SAMPLES`, rollups refreshed."""
    rows: SampleRows = {}
    for device, metrics in SAMPLES.items():
        for metric, samples in metrics.items():
            for at, value in samples:
                rows.setdefault((device, at), {})[metric] = value
    with psycopg.connect(api.database_url, autocommit=True) as connection:
        BatchWriter(connection).write(
            StorageBatch(
                telemetry={DeviceClass.STREETLIGHT: telemetry_rows(DeviceClass.STREETLIGHT, rows)}
            )
        )
        refresh_period(connection, MONDAY, MONDAY + timedelta(days=DAYS))
    return api


def _range(api: ApiSession, who: str = "technician", **params: Any) -> Any:
    return api.client.get(RANGE, headers=api.headers(who), params=params)


def _ok(api: ApiSession, **params: Any) -> dict[str, Any]:
    response = _range(api, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    return detail


def _points(body: dict[str, Any], metric: str, device_id: str | None = None) -> dict[datetime, Any]:
    [series] = [s for s in body["series"] if s["metric"] == metric and s["device_id"] == device_id]
    return {datetime.fromisoformat(p["t"]): p for p in series["points"]}


def _bucketed(samples: list[Sample], width: timedelta) -> dict[datetime, list[Sample]]:
    buckets: dict[datetime, list[Sample]] = defaultdict(list)
    for at, value in samples:
        buckets[MONDAY + (at - MONDAY) // width * width].append((at, value))
    return buckets


AGGREGATES: dict[str, Callable[[list[Sample]], float]] = {
    "avg": lambda s: statistics.fmean(v for _, v in s),
    "min": lambda s: min(v for _, v in s),
    "max": lambda s: max(v for _, v in s),
    "last": lambda s: max(s)[1],
    "sum": lambda s: sum(v for _, v in s),
    "count": lambda s: float(len(s)),
}


def test_latest_values_have_their_units_and_agree_with_the_shared_query(
    filled: ApiSession,
) -> None:
    response = filled.client.get(
        "/api/v1/devices/sl-menzel-n-002/telemetry/latest", headers=filled.headers("energy")
    )
    assert response.status_code == 200, response.text
    latest = response.json()
    assert latest["device_class"] == "streetlight"
    values = {v["metric"]: v for v in latest["values"]}
    assert values["battery_soc"]["unit"] == "%"
    assert values["lamp_power"]["unit"] == "W"
    assert values["battery_soc"]["description"] == "battery state of charge"
    with psycopg.connect(filled.database_url) as connection:
        shared = latest_values(connection, "sl-menzel-n-002")
    assert [
        (v["metric"], datetime.fromisoformat(v["ts"]), v["value"]) for v in values.values()
    ] == [(v.metric, v.ts, v.value) for v in shared]
    assert values["battery_soc"]["value"] == SAMPLES["sl-menzel-n-002"]["battery_soc"][-1][1]
    never = filled.client.get(
        "/api/v1/devices/sl-menzel-n-060/telemetry/latest", headers=filled.headers("energy")
    )
    assert never.json()["values"] == []


@pytest.mark.parametrize("aggregate", list(AGGREGATES))
def test_hourly_rollups_give_what_the_raw_samples_give(filled: ApiSession, aggregate: str) -> None:
    hourly = _ok(
        filled,
        device_id="sl-menzel-n-001",
        metric=["battery_soc", "lamp_power"],
        bucket="1h",
        aggregate=aggregate,
        **EVERY_DAY,
    )
    assert hourly["source"] == "hourly"
    assert (hourly["bucket"], hourly["bucket_seconds"]) == ("1h", 3_600)
    assert hourly["group"] is None
    assert hourly["across"] is None
    for metric in ("battery_soc", "lamp_power"):
        expected = {
            bucket: AGGREGATES[aggregate](samples)
            for bucket, samples in _bucketed(
                SAMPLES["sl-menzel-n-001"][metric], timedelta(hours=1)
            ).items()
        }
        got = _points(hourly, metric)
        assert set(got) == set(expected)
        for bucket, value in expected.items():
            assert got[bucket]["value"] == pytest.approx(value), (metric, bucket)
            assert got[bucket]["devices"] == 1


@pytest.mark.parametrize("aggregate", ["avg", "min", "max", "last", "sum", "count"])
def test_raw_hourly_and_daily_sources_agree(filled: ApiSession, aggregate: str) -> None:
    window = EVERY_DAY
    common = {"device_id": "sl-menzel-n-002", "metric": "battery_soc", "aggregate": aggregate}
    daily = _ok(filled, bucket="1d", **common, **window)
    sixhourly = _ok(filled, bucket="6h", **common, **window)
    raw = _ok(filled, bucket="30m", **common, **window)
    assert (daily["source"], sixhourly["source"], raw["source"]) == ("daily", "hourly", "raw")
    samples = SAMPLES["sl-menzel-n-002"]["battery_soc"]
    widths = ((daily, timedelta(days=1)), (sixhourly, timedelta(hours=6)))
    for body, width in (*widths, (raw, timedelta(minutes=30))):
        expected = {b: AGGREGATES[aggregate](s) for b, s in _bucketed(samples, width).items()}
        got = _points(body, "battery_soc")
        assert {b: p["value"] for b, p in got.items()} == pytest.approx(expected)


def test_a_range_is_widened_to_whole_buckets(filled: ApiSession) -> None:
    window = _window(MONDAY + timedelta(minutes=20), MONDAY + timedelta(hours=2, minutes=1))
    body = _ok(filled, device_id="sl-menzel-n-001", metric="battery_soc", bucket="1h", **window)
    assert datetime.fromisoformat(body["start"]) == MONDAY
    assert datetime.fromisoformat(body["end"]) == MONDAY + timedelta(hours=3)
    assert list(_points(body, "battery_soc")) == [MONDAY + timedelta(hours=h) for h in range(3)]


def test_auto_reads_the_rollups_for_long_ranges_and_raw_rows_for_short_ones(
    filled: ApiSession,
) -> None:
    month_window = _window(MONDAY - timedelta(days=27), MONDAY + timedelta(days=DAYS))
    month = _ok(filled, device_id="sl-menzel-n-001", metric="battery_soc", **month_window)
    assert (month["bucket"], month["source"]) == ("1h", "hourly")
    assert len(_points(month, "battery_soc")) == 24 * DAYS
    hours_window = _window(MONDAY, MONDAY + timedelta(hours=6))
    hours = _ok(filled, device_id="sl-menzel-n-001", metric="battery_soc", **hours_window)
    assert (hours["bucket"], hours["source"]) == ("1m", "raw")
    assert len(_points(hours, "battery_soc")) == len(
        [s for s in SAMPLES["sl-menzel-n-001"]["battery_soc"] if s[0] < MONDAY + timedelta(hours=6)]
    )


def test_a_group_combines_its_devices_per_bucket_and_counts_those_reporting(
    filled: ApiSession,
) -> None:
    window = FIRST_DAY
    body = _ok(filled, street_group="route-el-menzel-north", device_class="streetlight",
               metric=["battery_soc", "lamp_power"], bucket="1h", aggregate="avg",
               per_device=True, **window)  # fmt: skip
    assert body["group"] == "street_group=route-el-menzel-north,device_class=streetlight"
    assert body["devices"] == 66
    assert (body["across"], body["source"]) == ("avg", "hourly")
    per_hour: dict[datetime, list[float]] = defaultdict(list)
    for device in LIGHTS:
        for bucket, samples in _bucketed(
            SAMPLES[device]["battery_soc"], timedelta(hours=1)
        ).items():
            if bucket < MONDAY + timedelta(days=1):
                per_hour[bucket].append(AGGREGATES["avg"](samples))
    group = _points(body, "battery_soc")
    assert set(group) == set(per_hour)
    for bucket, averages in per_hour.items():
        assert group[bucket]["value"] == pytest.approx(statistics.fmean(averages))
        assert group[bucket]["devices"] == 3
    own = _points(body, "battery_soc", "sl-menzel-n-003")
    first_hour = _bucketed(SAMPLES["sl-menzel-n-003"]["battery_soc"], timedelta(hours=1))[MONDAY]
    assert own[MONDAY]["value"] == pytest.approx(AGGREGATES["avg"](first_hour))
    assert _points(body, "battery_soc", "sl-menzel-n-010") == {}
    assert len(body["series"]) == 2 + 2 * 66
    # Summed across devices: the total power of the group, hour by hour.
    total = _ok(filled, street_group="route-el-menzel-north", device_class="streetlight",
                metric="lamp_power", bucket="1d", aggregate="count", **window)  # fmt: skip
    assert total["across"] == "sum"
    [(day, point)] = _points(total, "lamp_power").items()
    assert day == MONDAY
    day_end = MONDAY + timedelta(days=1)
    assert point["value"] == sum(
        1 for d in LIGHTS for at, _ in SAMPLES[d]["lamp_power"] if at < day_end
    )
    lowest = _ok(filled, cabinet="menzel-n-c1", metric="battery_soc", bucket="1d",
                 aggregate="min", across="min", **window)  # fmt: skip
    expected_min = min(v for d in LIGHTS for at, v in SAMPLES[d]["battery_soc"] if at < day_end)
    assert _points(lowest, "battery_soc")[MONDAY]["value"] == expected_min


def test_a_whole_class_of_a_site_is_a_group(filled: ApiSession) -> None:
    body = _ok(
        filled,
        site="sefrou",
        device_class="streetlight",
        metric="battery_soc",
        bucket="1d",
        **EVERY_DAY,
    )
    assert body["devices"] == 2106
    assert [p["devices"] for p in _points(body, "battery_soc").values()] == [3] * DAYS


def test_a_decommissioned_device_still_counts_for_the_time_it_served(filled: ApiSession) -> None:
    admin = filled.headers("admin")
    assert filled.client.delete("/api/v1/devices/sl-menzel-n-001", headers=admin).status_code == 204
    window = FIRST_DAY
    body = _ok(filled, cabinet="menzel-n-c1", metric="battery_soc", bucket="1d", **window)
    assert _points(body, "battery_soc")[MONDAY]["devices"] == 3
    alone = _ok(filled, device_id="sl-menzel-n-001", metric="battery_soc", bucket="1d", **window)
    assert _points(alone, "battery_soc")[MONDAY]["devices"] == 1


def test_ranges_that_cannot_be_answered_are_refused_as_problems(filled: ApiSession) -> None:
    window = FIRST_DAY
    device = {"device_id": "sl-menzel-n-001"}

    def refused(status: int, **params: Any) -> str:
        return _problem(_range(filled, **params), status)

    assert "reports no 'air_temperature'" in refused(
        422, metric="air_temperature", **device, **window
    )
    assert "must be before" in refused(
        422, metric="tilt", **device, **{"from": MONDAY.isoformat(), "to": MONDAY.isoformat()}
    )
    month = {"from": (MONDAY - timedelta(days=30)).isoformat(), "to": MONDAY.isoformat()}
    assert "choose a wider bucket" in refused(422, metric="tilt", bucket="1m", **device, **month)
    metrics = ["pv_voltage", "pv_current", "pv_power", "battery_voltage", "battery_soc",
               "battery_temperature", "charge_current", "lamp_power", "tilt"]  # fmt: skip
    refused(422, metric=metrics, **device, **window)
    refused(
        422,
        metric="tilt",
        **device,
        **{"from": "2026-11-16T00:00:00", "to": "2026-11-17T00:00:00Z"},
    )
    refused(422, metric="tilt", **device, bucket="3m", **window)
    refused(422, metric="tilt", **device, aggregate="median", **window)
    refused(422, metric="Tilt!", **device, **window)
    refused(422, **device, **window)
    assert "either device_id or a group" in refused(
        422, metric="tilt", street_group="route-el-menzel-north", **device, **window
    )
    assert "name a group" in refused(422, metric="tilt", **window)
    assert "with its site" in refused(422, metric="tilt", device_class="streetlight", **window)
    assert "several classes" in refused(
        422, metric="tilt", street_group="route-el-menzel-north", **window
    )
    assert "at most 100" in refused(
        422, metric="tilt", site="sefrou", device_class="streetlight", per_device=True, **window
    )
    assert "no device 'sl-nowhere'" in refused(404, metric="tilt", device_id="sl-nowhere", **window)
    assert "no device in street_group=nowhere" in refused(
        404, metric="tilt", street_group="nowhere", **window
    )
    far = {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
    assert "must lie between" in refused(422, metric="tilt", **device, **far)
    for who in ("crew-north", "crew-south"):
        assert "needs the role" in _problem(
            _range(filled, who, metric="tilt", **device, **window), 403
        )
    latest = filled.client.get(
        "/api/v1/devices/sl-menzel-n-001/telemetry/latest", headers=filled.headers("crew-north")
    )
    _problem(latest, 403)
    _problem(
        filled.client.get(
            "/api/v1/devices/sl-nowhere/telemetry/latest", headers=filled.headers("technician")
        ),
        404,
    )
