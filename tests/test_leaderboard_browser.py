"""The board in a real headless browser (Debian's chromium + chromedriver, via selenium): load it,
sort a column, open a submission, and find no script injected by a team named
``<script>alert(1)</script>``."""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest
from leaderboard_util import running_server, text_dataset, write_predictions

from create_bench.leaderboard import client
from create_bench.leaderboard.db import Database
from create_bench.leaderboard.submission import ExpectedIds

XSS_TEAM = "<script>alert(1)</script>"
XSS_MODEL = '<img src=x onerror="alert(2)">'

pytestmark = pytest.mark.slow


def chromium_driver(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, (
        "chromium and chromium-driver must be installed (make setup installs them)"
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)


def no_alert(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        _ = driver.switch_to.alert  # raises when there is none
    except NoAlertPresentException:
        return True
    return False


def column_values(table, col: int) -> list[float]:
    return [float(r.find_elements("css selector", "td")[col].get_attribute("data-value")) for r in
            table.find_elements("css selector", "tbody tr")]  # fmt: skip


def test_board_in_headless_chromium(tmp_path):
    data = text_dataset(tmp_path / "data", n_test=8)
    expected = ExpectedIds.from_dataset(data, "test")
    db_url = f"sqlite:///{tmp_path / 'board.db'}"
    db = Database(db_url)
    db.migrate()
    teams = {name: db.add_team(name)[1] for name in (XSS_TEAM, "beta", "gamma")}
    models = {XSS_TEAM: XSS_MODEL, "beta": "model-beta", "gamma": "model-gamma"}
    with running_server(db_url, data, tmp_path / "storage", workers=1, extra=("--bootstrap", "50")) as url:
        ids = {}
        for seed, (team, token) in enumerate(teams.items()):
            pred = write_predictions(tmp_path / f"p{seed}", expected, seed=seed, card={"name": models[team]})
            ids[team] = client.upload(pred, url, token)["id"]
        for sid in ids.values():
            assert client.wait(url, sid, timeout=300)["state"] == "finished"

        profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
        driver = chromium_driver(profile)
        try:
            driver.set_page_load_timeout(60)
            driver.get(url + "/")
            assert driver.title == "create-bench leaderboard"
            assert no_alert(driver)
            # Only the board's own script is on the page, and the team name shows as text.
            assert driver.execute_script("return document.scripts.length") == 1
            assert driver.execute_script("return document.querySelectorAll('img').length") == 0
            table = driver.find_element("css selector", "table.board[data-task=retrieval]")
            teams_shown = [c.text for c in table.find_elements("css selector", "td.team")]
            assert sorted(teams_shown) == sorted(teams)
            models_shown = [c.text for c in table.find_elements("css selector", "td.model")]
            assert XSS_MODEL in models_shown

            # Sort by T2V caption R@5 (column 3): first click descending, then ascending.
            head = table.find_element("css selector", "th[data-col='3'] button")
            assert head.text == "R@5"
            head.click()
            th = table.find_element("css selector", "th[data-col='3']")
            assert th.get_attribute("aria-sort") == "descending"
            values = column_values(table, 3)
            assert values == sorted(values, reverse=True) and len(values) == 3
            head.click()
            assert th.get_attribute("aria-sort") == "ascending"
            assert column_values(table, 3) == sorted(values)
            # Sorting by a rank column (MnR, column 6) starts with the best (lowest) rank.
            table.find_element("css selector", "th[data-col='6'] button").click()
            assert column_values(table, 6) == sorted(column_values(table, 6))
            # Text columns sort too.
            table.find_element("css selector", "th[data-col='1'] button").click()
            shown = [c.text for c in table.find_elements("css selector", "td.team")]
            assert shown[1:] == ["beta", "gamma"] or shown[:2] == ["beta", "gamma"]

            # Open the XSS team's submission from the board.
            row = table.find_element("css selector", f"tr[data-id='{ids[XSS_TEAM]}']")
            row.find_element("css selector", "td.model a").click()
            deadline = time.monotonic() + 30
            while (
                not driver.current_url.endswith(f"/submissions/{ids[XSS_TEAM]}")
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            assert driver.current_url.endswith(f"/submissions/{ids[XSS_TEAM]}")
            assert no_alert(driver)
            assert driver.find_element("css selector", "h1").text == XSS_MODEL
            assert driver.find_element("css selector", "dd.team").text == XSS_TEAM
            assert driver.execute_script("return document.scripts.length") == 1
            assert driver.execute_script("return document.querySelectorAll('img').length") == 0
            assert driver.find_element("css selector", "dd.state").text == "finished"
            assert "R@1" in driver.find_element("css selector", "table.scores").text
        finally:
            driver.quit()
