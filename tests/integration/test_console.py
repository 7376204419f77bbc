"""The crew console in a real browser (Debian's headless Chromium) against a real server: log
in, see my zones' alerts only, open one, acknowledge it, mark it repaired with a note; open a
notification link; the page in French and in Arabic (right to left), with screenshots.

Screenshots go to the test's temporary directory; with ``SMARTCITY_SAVE_SCREENSHOTS=1`` they
are also copied to docs/images/ (the ones docs/console.md shows), so CI never changes the tree.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from alerts import store
from api.accounts import create_user
from api.config import ApiConfig
from api.roles import Role
from api.routes.console import ASSETS, CONSOLE_DIR
from api.server import BackgroundApiServer
from runtime.local_services import LocalMosquitto, free_port
from storage.registry import upsert_site
from tests.integration.api_fixtures import PASSWORD, ApiSession, add_people, sefrou
from tests.integration.test_api_alerts import NORTH, SOUTH, seed_alerts

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WAIT_S = 15
READ_AS = str.maketrans({"\u2068": None, "\u2069": None, "\u00a0": " ", "\u202f": " "})
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


# ----------------------------------------------------------------------------- without a browser


def test_the_console_page_answers_at_its_root_and_at_every_alert_link(api: ApiSession) -> None:
    page = api.client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/console/assets/console.js"' in page.text
    assert "{{ROOT}}" not in page.text
    assert api.client.get("/console/alerts/42").text == page.text  # a notification link
    moved = api.client.get("/console", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (308, "/console/")
    script = api.client.get("/console/assets/console.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert api.client.get("/console/assets/ar.json").json()["back"] == "رجوع"
    for name in ("index.html", "..%2Fapp.py", "secret.txt"):
        assert api.client.get(f"/console/assets/{name}").status_code == 404
    paths = api.client.get("/api/v1/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]


DYNAMIC_TEXTS = ("severity_", "status_", "cause_", "position_")
"""Prefixes of the texts whose keys the script builds from a value (``status_firing``)."""


def test_every_language_has_every_text_and_the_page_loads_nothing_from_outside() -> None:
    code = (CONSOLE_DIR / "console.js").read_text() + (CONSOLE_DIR / "index.html").read_text()
    texts = {
        language: json.loads((CONSOLE_DIR / f"{language}.json").read_text(encoding="utf-8"))
        for language in ("en", "fr", "ar")
    }
    assert set(texts["fr"]) == set(texts["en"]) == set(texts["ar"])
    for language, entries in texts.items():
        for key, value in entries.items():
            # A text with plural forms: one per CLDR category the language has, "other" always.
            forms = value if isinstance(value, dict) else {"other": value}
            assert "other" in forms, (language, key)
            assert all(form.strip() for form in forms.values()), (language, key)
    unused = [
        key for key in texts["en"] if f'"{key}"' not in code and not key.startswith(DYNAMIC_TEXTS)
    ]
    assert unused == []
    for name in [*ASSETS, "index.html"]:
        text = (CONSOLE_DIR / name).read_text(encoding="utf-8")
        assert "https://" not in text, name  # no CDN: the city network alone serves the page
        assert "http://" not in text, name


# ----------------------------------------------------------------------------- in a browser


@dataclass
class Console:
    url: str
    database_url: str
    alerts: dict[str, int]


@pytest.fixture
def console(database_url: str, broker: LocalMosquitto) -> Iterator[Console]:
    """A real server (uvicorn in a thread) on the Sefrou fleet, with people and alerts."""
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, sefrou())
    add_people(database_url)
    alerts = seed_alerts(database_url)
    config = ApiConfig(database_url=database_url, mqtt_port=broker.port, pool_size=4)
    server = BackgroundApiServer(config, port=free_port())
    server.start()
    try:
        yield Console(server.url, database_url, alerts)
    finally:
        server.stop()


def _missing_browser() -> str:
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.exists():
            return (
                f"{binary} is missing: the console test drives Debian's headless Chromium "
                f"(apt-get install {package})"
            )
    return ""


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Chrome]:
    """Headless Chromium at phone size (390 x 844), never downloading a driver."""
    missing = _missing_browser()
    if missing:
        pytest.skip(missing)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--window-size=390,844",
                     "--disable-gpu", "--disable-dev-shm-usage", "--lang=en-GB",
                     "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    driver = Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)  # the page's size
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The console as a crew sees it, through the browser."""

    def __init__(self, driver: Chrome, console: Console, shots: Path) -> None:
        self.driver = driver
        self.console = console
        self.shots = shots

    def wait(self, condition: Callable[[Chrome], object], what: str) -> None:
        # The page redraws its parts after each answer: an element found a moment ago may be
        # gone; look again rather than fail.
        redrawn = (NoSuchElementException, StaleElementReferenceException)
        WebDriverWait(self.driver, WAIT_S, ignored_exceptions=redrawn).until(condition, what)

    def css(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def click(self, selector: str) -> None:
        """Click the first element ``selector`` finds, finding it again if the page redrew it
        between the finding and the click (the alert list refreshes by itself)."""

        def clicked(_driver: Chrome) -> bool:
            self.css(selector).click()
            return True

        self.wait(clicked, f"{selector} clicked")

    def visible(self, element_id: str) -> None:
        self.wait(ec.visibility_of_element_located((By.ID, element_id)), f"#{element_id} shown")

    def script(self, code: str) -> object:
        return self.driver.execute_script(code)

    def open(self, path: str) -> None:
        self.driver.get(self.console.url + path)

    def place_me_at(self, latitude: float, longitude: float) -> None:
        self.driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"origin": self.console.url, "permissions": ["geolocation"]},
        )
        self.driver.execute_cdp_cmd(
            "Emulation.setGeolocationOverride",
            {"latitude": latitude, "longitude": longitude, "accuracy": 10},
        )

    def log_in(self, username: str) -> None:
        self.visible("login-view")
        self.css("#username").send_keys(username)
        self.css("#password").send_keys(PASSWORD)
        self.css("#login-button").click()

    def listed_alerts(self) -> list[int]:
        self.visible("list-view")
        code = (
            "return [...document.querySelectorAll('#alerts a')].map(a => Number(a.dataset.alert))"
        )
        self.wait(lambda _: self.script(code), "alerts listed")
        found = self.script(code)
        assert isinstance(found, list)
        return [int(alert_id) for alert_id in found]

    def text(self, selector: str) -> str:
        """The element's text as read: bidi isolates dropped, no-break spaces as spaces."""
        return self.css(selector).text.translate(READ_AS)

    def wait_text(self, selector: str, expected: str) -> None:
        self.wait(lambda _: expected in self.text(selector), f"{selector} shows {expected!r}")

    def language(self, code: str) -> None:
        self.css(f"[data-language='{code}']").click()
        self.wait(
            lambda _: self.script("return document.documentElement.lang") == code,
            f"the page in {code}",
        )

    def screenshot(self, name: str) -> Path:
        self.script("document.getElementById('toast').hidden = true")
        path = self.shots / f"{name}.png"
        assert self.driver.save_screenshot(str(path))
        if os.environ.get("SMARTCITY_SAVE_SCREENSHOTS") == "1":
            DOC_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOC_IMAGES / path.name)
        return path


def test_a_crew_logs_in_sees_its_alerts_acknowledges_and_marks_one_repaired(
    console: Console, browser: Chrome, tmp_path: Path
) -> None:
    page = Page(browser, console, tmp_path)
    lamp = console.alerts["north-lamp"]
    with psycopg.connect(console.database_url) as connection:
        row = connection.execute(
            "SELECT latitude, longitude FROM devices WHERE device_id = 'sl-menzel-n-010'"
        ).fetchone()
    assert row is not None
    page.place_me_at(row[0], row[1])
    page.open("/console/")
    page.log_in("crew-north")

    page.wait(lambda driver: len(page.listed_alerts()) == len(NORTH), "crew-north's alerts")
    listed = page.listed_alerts()
    assert set(listed) == {console.alerts[name] for name in NORTH}
    assert not set(listed) & {console.alerts[name] for name in SOUTH}
    assert listed[0] == lamp  # critical, and where I stand
    assert page.text("#list-title") == "Alertes ouvertes dans mes zones"  # crew-north reads fr
    page.wait_text("#position", "les plus proches")
    assert "à 0 m" in page.text(f"a[data-alert='{lamp}']")
    page.screenshot("console-fr")

    page.language("ar")
    assert browser.execute_script("return document.documentElement.dir") == "rtl"
    page.wait_text("#list-title", "التنبيهات المفتوحة في مناطقي")
    page.wait_text(f"a[data-alert='{lamp}']", "مصباح مطفأ ليلا")
    page.screenshot("console-ar")

    page.css(f"a[data-alert='{lamp}']").click()
    page.visible("alert-view")
    assert browser.current_url.endswith(f"/console/alerts/{lamp}")
    page.wait_text("#alert h2", "مصباح مطفأ ليلا")
    assert "العمود أولا" in page.text("#guide")
    map_link = page.css("#alert a.map").get_attribute("href") or ""
    assert map_link.startswith("https://www.openstreetmap.org/?mlat=")
    page.screenshot("console-alert-ar")

    page.language("fr")
    page.wait_text("#guide", "D'abord le poteau")
    page.screenshot("console-alert-fr")
    page.css("#acknowledge").click()
    page.wait_text("#alert .badges", "Prise en charge")
    assert not page.css("#acknowledge").is_displayed()
    page.css("#repair-button").click()
    page.wait_text("#toast", "Écrivez d'abord ce que vous avez fait")  # the note is required
    page.css("#repair-note").send_keys("Driver LED remplacé")
    page.css("#repair-button").click()
    page.wait_text("#alert .badges", "Résolue")
    page.wait_text("#history", "Driver LED remplacé")

    with psycopg.connect(console.database_url) as connection:
        transitions = store.transitions_of(connection, lamp)
    assert [(t.to_status.value, t.actor) for t in transitions] == [
        ("firing", "engine"),
        ("acknowledged", "crew-north"),
        ("resolved", "crew-north"),
    ]
    assert "Driver LED remplacé" in transitions[-1].note


def test_a_notification_link_opens_its_alert_after_log_in(
    console: Console, browser: Chrome, tmp_path: Path
) -> None:
    page = Page(browser, console, tmp_path)
    window = console.alerts["hall-window"]
    page.open(f"/console/alerts/{window}")
    page.log_in("crew-north")
    page.visible("alert-view")
    page.wait_text("#alert h2", "Fenêtre ouverte")
    assert browser.current_url.endswith(f"/console/alerts/{window}")
    assert "Fermer la fenêtre" in page.text("#guide")

    # another zone's alert: the same answer as an alert that does not exist
    page.open(f"/console/alerts/{console.alerts['south-lamp']}")
    page.visible("not-found")
    assert "pas dans vos zones" in page.text("#not-found")
    page.css("#back").click()
    assert set(page.listed_alerts()) == {console.alerts[name] for name in NORTH}


def _everywhere(console: Console) -> tuple[list[str], list[str]]:
    """A crew of every street group and building of Sefrou, as ``up`` makes its demo crew."""
    groups = sorted({d.street_group for d in sefrou().devices if d.street_group})
    buildings = sorted({d.building for d in sefrou().devices if d.building})
    with psycopg.connect(console.database_url) as connection:
        create_user(
            connection, "crew-everywhere", Role.CREW, street_groups=groups, buildings=buildings,
            language="en", password=PASSWORD,
        )  # fmt: skip
    return groups, buildings


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.script(
        f"const r = document.querySelector({selector!r}).getBoundingClientRect();"
        " return {top: r.top, width: r.width, height: r.height};"
    )
    assert isinstance(box, dict)
    return box


def test_a_crew_of_many_zones_sees_its_alerts_first_and_its_zones_folded_into_a_count(
    console: Console, browser: Chrome, tmp_path: Path
) -> None:
    """The demo crew works on 93 street groups and 10 buildings: on a phone its first alert
    shows on the first screen, the zones after the alerts, folded into their counts, opening
    on the registry's names; the header's buttons are 48 px touch targets, and the alert
    page's title wraps rather than being cut."""
    groups, buildings = _everywhere(console)
    assert (len(groups), len(buildings)) == (93, 10)
    page = Page(browser, console, tmp_path)
    page.open("/console/")
    page.log_in("crew-everywhere")
    everywhere = {console.alerts[name] for name in NORTH | SOUTH | {"fes-lamp"}}
    page.wait(lambda _: everywhere <= set(page.listed_alerts()), "the alerts of every street")
    page.wait_text("#zones-summary", "Zones: 93 streets and 10 buildings")
    assert page.script("return document.getElementById('zones').open") is False
    assert not page.css("#zones-list").is_displayed()
    first_alert, zones = _box(page, "#alerts a"), _box(page, "#zones")
    assert first_alert["top"] + first_alert["height"] <= PHONE["height"], "on the first screen"
    assert zones["top"] > _box(page, "#alerts")["top"], "the zones after the alerts"

    page.css("#zones-summary").click()
    page.wait(lambda _: page.css("#zones-list").is_displayed(), "the zones opened")
    names = page.text("#zones-list").splitlines()
    assert len(names) == 103
    assert "Route El Menzel, north carriageway" in names  # one run: its name
    assert "Avenue Mohammed V" in names  # its north and south sides: what they share
    assert "Municipality of Sefrou (town hall)" in names  # a building's name
    page.script("window.scrollTo(0, document.getElementById('zones').offsetTop - 80)")
    page.screenshot("console-zones-open-en")
    page.language("ar")
    page.wait_text("#zones-summary", "المناطق: 93 شارعًا و10 مبانٍ")
    page.language("fr")
    page.wait_text("#zones-summary", "Zones : 93 rues et 10 bâtiments")

    page.script("window.scrollTo(0, 0)")  # the zones' names scrolled the page
    page.click("#alerts a")
    page.visible("alert-view")
    for language in ("fr", "en", "ar"):
        page.language(language)
        for button in browser.find_elements(By.CSS_SELECTOR, "header button"):
            size = button.size
            assert size["height"] >= 48, (language, button.text, size)
            assert size["width"] >= 48, (language, button.text, size)
        for title in ("#heading", "#alert h2"):
            clipped = page.script(
                f"const e = document.querySelector({title!r});"
                " return e.scrollWidth > e.clientWidth;"
            )
            assert clipped is False, (language, title, page.text(title))
