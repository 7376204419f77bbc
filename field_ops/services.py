"""What a citizen can report (Open311 GeoReport v2 ``services``) and how a report finds its
devices: pure functions of the report and the site's devices.

A report names a kind (``service_code``) and a place. It is matched to the devices of the
kind's class around that place, nearest first: the few lights of a street within
:attr:`ServiceKind.radius_m`, the sign, or every zone of the nearest building. The kind's
``rules`` are the fault alerts that say the same thing: an open one on a matched device is the
report's answer ("known, a crew is on it").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from protocol.sites import Device
from protocol.topics import DeviceClass

Locale = Literal["fr", "ar", "en"]
LOCALES: Final[tuple[Locale, ...]] = ("fr", "ar", "en")
EARTH_RADIUS_M: Final = 6_371_000.0
MAX_MATCHED: Final = 3
"""A report names at most this many devices: the nearest ones."""


@dataclass(frozen=True, slots=True)
class ServiceKind:
    code: str
    device_class: DeviceClass
    names: MappingProxyType[str, str]
    """By locale (fr, ar, en)."""
    descriptions: MappingProxyType[str, str]
    rules: tuple[str, ...]
    """The fault alerts that say what this report says."""
    radius_m: float
    """How far from the reported place a device may stand [m]."""
    group: str
    """Open311's ``group``: the kind of equipment."""

    def name(self, locale: Locale) -> str:
        return self.names.get(locale) or self.names["en"]

    def description(self, locale: Locale) -> str:
        return self.descriptions.get(locale) or self.descriptions["en"]


def _kind(  # noqa: PLR0917 - a table row, read as one
    code: str,
    device_class: DeviceClass,
    names: tuple[str, str, str],
    descriptions: tuple[str, str, str],
    rules: tuple[str, ...],
    radius_m: float,
) -> ServiceKind:
    group = {
        DeviceClass.STREETLIGHT: "streetlight",
        DeviceClass.SIGNAGE: "signage",
        DeviceClass.BUILDING: "building",
    }[device_class]
    return ServiceKind(
        code,
        device_class,
        MappingProxyType(dict(zip(LOCALES, names, strict=True))),
        MappingProxyType(dict(zip(LOCALES, descriptions, strict=True))),
        rules,
        radius_m,
        group,
    )


SERVICES: Final[tuple[ServiceKind, ...]] = (
    _kind(
        "streetlight-dark",
        DeviceClass.STREETLIGHT,
        ("Lampadaire éteint", "مصباح الشارع مطفأ", "Streetlight out"),
        (
            "Un lampadaire ne s'allume pas la nuit.",
            "مصباح شارع لا يشتغل في الليل.",
            "A streetlight stays dark at night.",
        ),
        ("lamp-out", "light-offline", "will-go-dark", "charge-controller-fault"),
        40.0,
    ),
    _kind(
        "streetlight-flickering",
        DeviceClass.STREETLIGHT,
        ("Lampadaire qui clignote", "مصباح الشارع يومض", "Streetlight flickering"),
        (
            "Un lampadaire clignote ou s'éteint et se rallume.",
            "مصباح شارع يومض أو ينطفئ ويشتعل.",
            "A streetlight flickers or goes off and on.",
        ),
        ("lamp-flickering", "battery-draining-fast"),
        40.0,
    ),
    _kind(
        "streetlight-day-burning",
        DeviceClass.STREETLIGHT,
        ("Lampadaire allumé le jour", "مصباح الشارع مشتعل في النهار", "Streetlight on by day"),
        (
            "Un lampadaire reste allumé en plein jour.",
            "مصباح شارع يبقى مشتعلا في النهار.",
            "A streetlight stays lit in daylight.",
        ),
        ("day-burning",),
        40.0,
    ),
    _kind(
        "pole-damaged",
        DeviceClass.STREETLIGHT,
        ("Poteau endommagé ou penché", "عمود متضرر أو مائل", "Damaged or leaning pole"),
        (
            "Un poteau d'éclairage est tombé, penché ou endommagé.",
            "عمود إنارة سقط أو مال أو تضرر.",
            "A light pole is down, leaning or damaged.",
        ),
        ("pole-down", "pole-tilted"),
        40.0,
    ),
    _kind(
        "sign-blank",
        DeviceClass.SIGNAGE,
        ("Panneau éteint ou illisible", "لوحة مطفأة أو غير مقروءة", "Sign blank or unreadable"),
        (
            "Un panneau électronique est éteint ou a des points morts.",
            "لوحة إلكترونية مطفأة أو بها نقاط معطلة.",
            "An electronic sign is dark or has dead pixels.",
        ),
        ("sign-pixels-failed", "sign-supply-failure", "sign-offline", "sign-overheating"),
        80.0,
    ),
    _kind(
        "sign-wrong",
        DeviceClass.SIGNAGE,
        ("Panneau qui affiche faux", "لوحة تعرض معلومات خاطئة", "Sign showing the wrong thing"),
        (
            "Un panneau affiche un message faux ou périmé.",
            "لوحة تعرض رسالة خاطئة أو قديمة.",
            "A sign shows a wrong or stale message.",
        ),
        ("sign-offline",),
        80.0,
    ),
    _kind(
        "building-too-cold",
        DeviceClass.BUILDING,
        ("Bâtiment trop froid", "المبنى بارد جدا", "Building too cold"),
        (
            "Il fait trop froid dans un bâtiment municipal.",
            "الجو بارد جدا داخل مبنى جماعي.",
            "It is too cold inside a municipal building.",
        ),
        (
            "zone-cold-while-heating",
            "radiator-cold",
            "heating-short-cycling",
            "window-open-heating",
        ),
        150.0,
    ),
    _kind(
        "building-too-hot",
        DeviceClass.BUILDING,
        ("Bâtiment trop chaud", "المبنى حار جدا", "Building too hot"),
        (
            "Il fait trop chaud dans un bâtiment municipal.",
            "الجو حار جدا داخل مبنى جماعي.",
            "It is too hot inside a municipal building.",
        ),
        ("valve-stuck-open", "heating-and-cooling"),
        150.0,
    ),
)
BY_CODE: Final = MappingProxyType({kind.code: kind for kind in SERVICES})


def metres_between(lat_a: float, lon_a: float, lat_b: float, lon_b: float) -> float:
    """Great-circle distance [m] (haversine)."""
    phi_a, phi_b = math.radians(lat_a), math.radians(lat_b)
    d_phi = phi_b - phi_a
    d_lambda = math.radians(lon_b - lon_a)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi_a) * math.cos(phi_b) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def match_devices(
    kind: ServiceKind, latitude: float, longitude: float, devices: Iterable[Device]
) -> tuple[str, ...]:
    """The devices a report at (latitude, longitude) of ``kind`` is about, nearest first:
    the :data:`MAX_MATCHED` nearest of the kind's class within its radius; for a building,
    every zone of the nearest building within it. None matched: an empty tuple."""
    placed = [
        (metres_between(latitude, longitude, d.latitude, d.longitude), d.id, d)
        for d in devices
        if d.device_class is kind.device_class
        and d.latitude is not None
        and d.longitude is not None
    ]
    near = sorted((item for item in placed if item[0] <= kind.radius_m), key=lambda i: i[:2])
    if not near:
        return ()
    if kind.device_class is DeviceClass.BUILDING:
        building = near[0][2].building
        return tuple(sorted(d.id for _, _, d in placed if d.building == building))
    return tuple(device_id for _, device_id, _ in near[:MAX_MATCHED])


@dataclass(frozen=True, slots=True)
class Earlier:
    """An open report already filed, as duplicate detection sees it."""

    request_id: int
    service_code: str
    devices: tuple[str, ...]
    latitude: float
    longitude: float


DUPLICATE_WITHIN_M: Final = 50.0
"""Two reports of the same kind this close, about no device, are the same fault [m]."""


def duplicate_of(
    service_code: str,
    devices: Sequence[str],
    latitude: float,
    longitude: float,
    earlier: Iterable[Earlier],
) -> int | None:
    """The first open report of the same kind that this one repeats: one naming the same
    nearest device, or, where neither names a device, one within :data:`DUPLICATE_WITHIN_M`."""
    for report in sorted(earlier, key=lambda r: r.request_id):
        if report.service_code != service_code:
            continue
        if devices and report.devices and report.devices[0] == devices[0]:
            return report.request_id
        if not devices and not report.devices:
            far = metres_between(latitude, longitude, report.latitude, report.longitude)
            if far <= DUPLICATE_WITHIN_M:
                return report.request_id
    return None
