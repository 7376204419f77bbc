"""The API's documentation page works on a network without internet: everything it loads
comes from the platform itself, and its OAuth2 redirect page is where it says."""

from __future__ import annotations

import re

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import DOCS_URL
from tests.integration.api_fixtures import ApiSession
from tests.integration.test_console import WAIT_S, Console, browser, console  # noqa: F401

pytestmark = pytest.mark.integration


def _loaded_by(page: str) -> list[str]:
    """The scripts, styles and icons a page loads."""
    return re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)


def test_the_docs_page_and_every_asset_it_loads_are_served_by_the_api(api: ApiSession) -> None:
    page = api.client.get(DOCS_URL)
    assert page.status_code == 200
    assets = _loaded_by(page.text)
    assert len(assets) >= 3, "a script, a style sheet and an icon"
    for asset in assets:
        assert asset.startswith(f"{DOCS_URL}/"), f"{asset} is not the platform's own"
        served = api.client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1_000, asset
    redirect = re.search(r"""oauth2RedirectUrl['"]?\s*:\s*[^'"]*['"]([^'"]+)['"]""", page.text)
    assert redirect is not None, "the page names its OAuth2 redirect"
    assert redirect.group(1).endswith(f"{DOCS_URL}/oauth2-redirect")
    assert api.client.get(f"{DOCS_URL}/oauth2-redirect").status_code == 200


def test_the_docs_page_shows_every_operation_loading_nothing_from_another_host(
    console: Console,  # noqa: F811 - the fixture
    browser: Chrome,  # noqa: F811 - the fixture
) -> None:
    browser.get(f"{console.url}{DOCS_URL}")
    WebDriverWait(browser, WAIT_S).until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) > 20
    )
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert loaded, "the page loaded its assets"
    assert [url for url in loaded if not url.startswith(console.url)] == []
