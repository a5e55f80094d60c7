"""The web page groups a photo's garments by person (issue 29): "Person 1: top · bottom · footwear", in
headless Chromium against the real gateway (fixtures and requirements as in test_web.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.helpers.paths import DATA
from tests.services.gateway.test_web import TIMEOUT_MS, PageWatch, _origin, base_url, browser  # noqa: F401

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

TWO_PEOPLE = DATA / "people" / "park-f060.jpg"  # NanoDet finds neither; the multi-pose model finds both


def test_garments_are_listed_per_person_and_select_their_results(browser: Any, base_url: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = PageWatch(page, _origin(base_url))
    page.goto(base_url)
    page.set_input_files('[data-testid="upload"]', str(TWO_PEOPLE))
    people = page.get_by_test_id("person")
    expect(people).to_have_count(2)
    expect(people.nth(0)).to_have_text(re.compile(r"^Person 1: top · bottom · footwear$"))
    expect(people.nth(1)).to_have_text(re.compile(r"^Person 2: top · bottom · footwear$"))
    # a person's garment shows its own similar items, searched among its kind's categories
    people.nth(1).get_by_role("button", name="footwear").click()
    expect(page.locator("#results-title")).to_contain_text("Similar to footwear in ")
    expect(page.get_by_test_id("result").first).to_be_visible()
    # a photo without people hides the list
    page.set_input_files('[data-testid="upload"]', str(DATA / "photos" / "dog.jpg"))
    expect(page.get_by_test_id("people")).to_be_hidden()
    assert not watch.problems, watch.problems
