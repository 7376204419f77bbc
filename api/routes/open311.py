"""Citizens' reports through Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2), at
``/open311/v2``: the kinds a citizen can report, new reports from client applications (each
with its API key, at most a few an hour from one address), and the reports' status. JSON or
XML by the path's extension; errors are GeoReport's ``[{"code", "description"}]`` list.

Reading is open to anyone (the reports carry no personal data back); writing needs an
application's key (``smartcity open311 client add``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, cast
from urllib.parse import parse_qs
from xml.etree import ElementTree

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import Db, Now, State
from api.state import ApiState
from field_ops.reports import NewReport, Report, client_of_key, file_report, reports
from field_ops.services import BY_CODE, LOCALES, SERVICES, Locale, metres_between

PREFIX: Final = "/open311/v2"
CITY_RADIUS_M: Final = 30_000.0
"""A report further than this from every site's centre is not this platform's [m]."""
MAX_TEXT: Final = 4_000
MAX_FIELD: Final = 200
EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Characters no report needs and XML 1.0 cannot carry."""
STATUS_NOTES: Final[Mapping[str, Mapping[str, str]]] = {
    "known": {
        "fr": "Panne déjà connue : une équipe s'en occupe.",
        "ar": "العطل معروف: فريق يتكفل به.",
        "en": "Known fault: a crew is on it.",
    },
    "sent": {
        "fr": "Transmis à l'équipe de maintenance.",
        "ar": "أحيل على فريق الصيانة.",
        "en": "Sent to the maintenance crew.",
    },
    "unmatched": {
        "fr": "Aucun équipement de ce type ici : le service technique va vérifier.",
        "ar": "لا يوجد جهاز من هذا النوع هنا: ستتحقق المصلحة التقنية.",
        "en": "No equipment of this kind here: the technical service will check.",
    },
    "closed": {"fr": "Réparé.", "ar": "تم الإصلاح.", "en": "Repaired."},
}

router = APIRouter(prefix=PREFIX, tags=["open311"], include_in_schema=False)
"""Not in ``/api/v1/openapi.json``: GeoReport is its own contract (its error lists, keys and
formats, not the API's problems and tokens), documented by the standard and docs/open311.md."""


class Open311Error(Exception):
    def __init__(self, status: int, description: str, retry_after_s: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after_s = retry_after_s


def _respond(payload: Any, fmt: str, status: int = 200, root: str = "") -> Response:
    if fmt == "xml":
        return Response(_xml(root, payload), status_code=status, media_type="text/xml")
    return Response(
        json.dumps(payload, ensure_ascii=False), status_code=status, media_type="application/json"
    )


def _error(error: Open311Error, fmt: str) -> Response:
    response = _respond(
        [{"code": error.status, "description": error.description}], fmt, error.status, "errors"
    )
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def _format(fmt: str) -> str:
    if fmt not in {"json", "xml"}:
        raise Open311Error(404, f"unknown format {fmt!r}: ask for .json or .xml")
    return fmt


def _locale(value: str | None) -> Locale:
    if value is None or value == "":
        return "fr"
    for locale in LOCALES:
        if value == locale:
            return locale
    raise Open311Error(400, f"locale {value!r}: give fr, ar or en")


@router.get("/services.{fmt}", summary="What a citizen can report")
def get_services(fmt: str, locale: str | None = None) -> Response:
    """The kinds of report (GeoReport ``GET services``), named in ``locale`` (fr, ar, en)."""
    try:
        chosen = _format(fmt)
        language = _locale(locale)
    except Open311Error as error:
        return _error(error, _shown(fmt))
    services = [
        {
            "service_code": kind.code,
            "service_name": kind.name(language),
            "description": kind.description(language),
            "metadata": False,
            "type": "realtime",
            "keywords": ",".join(kind.rules),
            "group": kind.group,
        }
        for kind in SERVICES
    ]
    return _respond(services, chosen, root="services")


@router.post("/requests.{fmt}", summary="Report a fault", status_code=201)
async def post_request(
    fmt: str, request: Request, connection: Db, state: State, at: Now
) -> Response:
    """A new report (GeoReport ``POST requests``), form-encoded as the standard says, or JSON:
    ``api_key``, ``service_code``, ``lat`` and ``long``, and optionally ``description``,
    ``address_string``, ``media_url``, ``email``, ``phone``, ``first_name``, ``last_name``,
    ``locale`` (fr, ar, en). Answers the new ``service_request_id`` and what happens next."""
    try:
        chosen = _format(fmt)
        fields = await _fields(request)
        address = request.client.host if request.client is not None else "unknown"
        report = _accepted(connection, state, fields, address, at)
        site_id = _site_of(connection, report.latitude, report.longitude)
        filed = file_report(connection, report, site_id, at)
    except Open311Error as error:
        return _error(error, _shown(fmt))
    note = "known" if filed.known else "sent" if filed.alert_id is not None else "unmatched"
    answer = [
        {
            "service_request_id": str(filed.request_id),
            "service_notice": STATUS_NOTES[note][report.locale],
            "account_id": None,
        }
    ]
    return _respond(answer, chosen, 201, root="service_requests")


@router.get("/requests.{fmt}", summary="Reports and their status")
def get_requests(
    fmt: str,
    connection: Db,
    *,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
    locale: str | None = None,
) -> Response:
    """Reports, newest first (GeoReport ``GET requests``): by ``service_request_id`` (comma
    separated), ``service_code``, ``start_date`` and ``end_date`` (ISO 8601), ``status``
    (open, closed); at most 1,000."""
    try:
        chosen = _format(fmt)
        language = _locale(locale)
        ids = _ids(service_request_id) if service_request_id else None
        codes = service_code.split(",") if service_code else None
        _status(status)
        found = reports(
            connection,
            request_ids=ids,
            service_codes=codes,
            start=_moment("start_date", start_date),
            end=_moment("end_date", end_date),
        )
    except Open311Error as error:
        return _error(error, _shown(fmt))
    shown = [r for r in found if not status or r.status == status]
    return _respond([_request_out(r, language) for r in shown], chosen, root="service_requests")


@router.get("/requests/{request_id}.{fmt}", summary="One report and its status")
def get_request(request_id: str, fmt: str, connection: Db, locale: str | None = None) -> Response:
    """One report (GeoReport ``GET service request``), as a one-item list."""
    try:
        chosen = _format(fmt)
        language = _locale(locale)
        found = _one(connection, request_id)
    except Open311Error as error:
        return _error(error, _shown(fmt))
    return _respond([_request_out(found[0], language)], chosen, root="service_requests")


def _accepted(
    connection: psycopg.Connection[Any],
    state: ApiState,
    fields: Mapping[str, str],
    address: str,
    at: datetime,
) -> NewReport:
    """The report ``fields`` describe, from a known application and an address under its
    limit; else the error to answer."""
    client = client_of_key(connection, fields.get("api_key", ""))
    if client is None:
        raise Open311Error(403, "api_key: unknown or revoked; ask the city for a key")
    wait = state.reports.take(address, at)
    if wait is not None:
        seconds = max(1, math.ceil(wait.total_seconds()))
        raise Open311Error(
            429, f"too many reports from this address: try again in {seconds} s", seconds
        )
    return _new_report(fields, client, address)


def _shown(fmt: str) -> str:
    """The format an error is written in: the one asked for, JSON when that is unknown."""
    return fmt if fmt in {"json", "xml"} else "json"


async def _fields(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 16_000:
        raise Open311Error(413, "the request is too large")
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    try:
        if kind == "application/json":
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise Open311Error(400, "give the fields as a JSON object")
            return {str(k): "" if v is None else str(v) for k, v in data.items()}
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Open311Error(400, "the body is neither a form nor JSON in UTF-8") from None
    return {key: values[-1] for key, values in parsed.items()}


def _new_report(fields: Mapping[str, str], client: str, address: str) -> NewReport:
    code = fields.get("service_code", "")
    if code not in BY_CODE:
        known = ", ".join(sorted(BY_CODE))
        raise Open311Error(400, f"service_code {code!r}: give one of {known}")
    latitude = _coordinate(fields, "lat", 90.0)
    longitude = _coordinate(fields, "long", 180.0)
    media_url = fields.get("media_url") or None
    if media_url is not None and (
        not media_url.startswith(("http://", "https://")) or len(media_url) > 2_000
    ):
        raise Open311Error(400, "media_url: give the photo's http(s) address")
    email = fields.get("email") or None
    if email is not None and (not EMAIL.match(email) or len(email) > MAX_FIELD):
        raise Open311Error(400, f"email {email!r} is not an e-mail address")
    for name in ("phone", "first_name", "last_name", "address_string"):
        if len(fields.get(name, "")) > MAX_FIELD:
            raise Open311Error(400, f"{name}: at most {MAX_FIELD} characters")
    for name, value in fields.items():
        if CONTROL.search(value):
            raise Open311Error(400, f"{name}: control characters are not allowed")
    description = fields.get("description", "")
    if len(description) > MAX_TEXT:
        raise Open311Error(400, f"description: at most {MAX_TEXT} characters")
    return NewReport(
        client_id=client,
        source_address=address,
        service_code=code,
        latitude=latitude,
        longitude=longitude,
        locale=_locale(fields.get("locale")),
        description=description.strip(),
        address_string=fields.get("address_string", "").strip(),
        media_url=media_url,
        email=email,
        phone=fields.get("phone") or None,
        first_name=fields.get("first_name") or None,
        last_name=fields.get("last_name") or None,
    )


def _coordinate(fields: Mapping[str, str], name: str, bound: float) -> float:
    text = fields.get(name, "")
    try:
        value = float(text)
    except ValueError:
        raise Open311Error(400, f"{name}: give the place's {name} in degrees") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise Open311Error(400, f"{name} {text!r} is not a {name} in degrees")
    return value


def _site_of(connection: psycopg.Connection[Any], latitude: float, longitude: float) -> str:
    """The site whose centre is nearest, within :data:`CITY_RADIUS_M`."""
    sites = connection.execute("SELECT site_id, latitude, longitude FROM sites").fetchall()
    near = sorted(
        (metres_between(latitude, longitude, lat, lon), site_id) for site_id, lat, lon in sites
    )
    if not near or near[0][0] > CITY_RADIUS_M:
        raise Open311Error(400, "lat/long: this place is outside the city this service covers")
    return str(near[0][1])


def _status(status: str | None) -> None:
    if status not in {None, "", "open", "closed"}:
        raise Open311Error(400, f"status {status!r}: give open or closed")


def _one(connection: psycopg.Connection[Any], request_id: str) -> list[Report]:
    found = reports(connection, request_ids=_ids(request_id))
    if not found:
        raise Open311Error(404, f"there is no service request {request_id}")
    return found


def _ids(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise Open311Error(400, f"service_request_id {text!r}: give numbers") from None


def _moment(name: str, text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Open311Error(400, f"{name} {text!r}: give an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise Open311Error(400, f"{name} {text!r}: give a time with its UTC offset")
    return moment


def _request_out(report: Report, language: Locale) -> dict[str, Any]:
    kind = BY_CODE.get(report.service_code)
    if report.status == "closed":
        notes = report.closing_note or STATUS_NOTES["closed"][language]
    elif report.alert_id is None:
        notes = STATUS_NOTES["unmatched"][language]
    elif report.alert_rule is not None and report.alert_rule != "citizen-report":
        notes = STATUS_NOTES["known"][language]
    else:
        notes = STATUS_NOTES["sent"][language]
    return {
        "service_request_id": str(report.request_id),
        "status": report.status,
        "status_notes": notes,
        "service_name": kind.name(language) if kind else report.service_code,
        "service_code": report.service_code,
        "description": report.description,
        "agency_responsible": "",
        "service_notice": "",
        "requested_datetime": report.requested_at.isoformat(),
        "updated_datetime": report.updated_at.isoformat(),
        "expected_datetime": None,
        "address": report.address_string,
        "address_id": None,
        "zipcode": None,
        "lat": report.latitude,
        "long": report.longitude,
        "media_url": report.media_url,
    }


def _xml(root: str, payload: Any) -> bytes:
    """GeoReport's XML: ``<services><service>...``, ``<service_requests><request>...``,
    ``<errors><error>...``."""
    item = {"services": "service", "service_requests": "request", "errors": "error"}[root]
    top = ElementTree.Element(root)
    for entry in cast(Sequence[Mapping[str, Any]], payload):
        element = ElementTree.SubElement(top, item)
        for key, value in entry.items():
            child = ElementTree.SubElement(element, key)
            if value is not None:
                child.text = str(value).lower() if isinstance(value, bool) else str(value)
    return bytes(ElementTree.tostring(top, encoding="utf-8", xml_declaration=True))
