"""The web console in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by Selenium. Logs in, reads the overview grid and the day chart, compares them with the
CLI's answers, saves a screenshot of every page, then checks what a reader with one grant can see.

Usage: browser.py CONSOLE_URL ADMIN PASSWORD READER PASSWORD STATUS_JSON HISTORY_JSON DAY ARTIFACTS
Prints one JSON object: what it found; exits non-zero on any mismatch.
"""

import json
import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

PAGES = ["/", "/day", "/maturity", "/marts", "/runs"]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tempfile.mkdtemp()}",
    ]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def login(driver, url, user, password):
    driver.get(url + "/")
    assert "/login" in driver.current_url, f"not sent to the login form: {driver.current_url}"
    driver.find_element(By.NAME, "user").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    try:
        WebDriverWait(driver, 10).until(lambda d: "/login" not in d.current_url)
    except Exception:
        raise AssertionError(f"login failed: {driver.page_source[:500]}")


def overview_counts(driver):
    """(source, account) -> {state: count} from the grid."""
    counts = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "td.account"):
        key = (row.get_attribute("data-source"), row.get_attribute("data-account"))
        cells = row.find_elements(By.XPATH, "following-sibling::td[1]//td[@data-state]")
        states = {}
        for c in cells:
            state = c.get_attribute("data-state")
            states[state] = states.get(state, 0) + 1
        counts[key] = states
    return counts


def history_points(rows):
    """The day's installs after each version, as `tidemark history` totals them."""
    cells, points = {}, []
    for r in rows:
        key = (r.get("source"), r.get("account_id"), r.get("campaign_id"))
        cells[key] = float(r.get("installs") or 0)
        total = sum(cells.values())
        if points and points[-1][0] == r["version"]:
            points[-1] = (r["version"], total)
        else:
            points.append((r["version"], total))
    return points


def main():
    url, admin, admin_pw, reader, reader_pw, status_file, history_file, day, artifacts = sys.argv[1:10]
    os.makedirs(artifacts, exist_ok=True)
    out = {"screenshots": []}
    driver = browser()
    try:
        login(driver, url, admin, admin_pw)

        # The overview grid against `tidemark status --format json`.
        driver.get(url + "/")
        grid = overview_counts(driver)
        status = json.load(open(status_file))
        expected = {
            (a["source"], a["account"]): {k: v for k, v in a["cells"].items() if v}
            for a in status["accounts"]
        }
        assert grid == expected, f"grid {grid} != status {expected}"
        out["grid_accounts"] = len(grid)
        out["states"] = sorted({s for c in grid.values() for s in c})
        page = driver.page_source
        out["problems"] = [
            td.text for td in driver.find_elements(By.CSS_SELECTOR, "td.outcome")
        ]

        # The day chart against `tidemark history DAY --format json`.
        driver.get(f"{url}/day?date={day}")
        circles = driver.find_elements(By.CSS_SELECTOR, "#day-chart circle[data-series='installs']")
        chart = [(int(c.get_attribute("data-version")), float(c.get_attribute("data-value"))) for c in circles]
        history = history_points(json.load(open(history_file)))
        assert chart == history, f"chart {chart} != history {history}"
        out["day_points"] = len(chart)

        for path in PAGES:
            driver.get(url + path)
            assert "/login" not in driver.current_url, path
            assert "NaN" not in driver.page_source, f"NaN on {path}"
            name = "overview" if path == "/" else path.strip("/")
            shot = os.path.join(artifacts, f"admin-{name}.png")
            driver.save_screenshot(shot)
            out["screenshots"].append(shot)
        driver.get(url + "/maturity")
        out["maturity_curves"] = len(driver.find_elements(By.CSS_SELECTOR, "svg[id^='curve-']"))
        driver.get(url + "/marts")
        out["marts"] = [h.get_attribute("data-mart") for h in driver.find_elements(By.CSS_SELECTOR, "h2.mart")]

        # Log out: the pages are closed again.
        driver.find_element(By.CSS_SELECTOR, "header form button").click()
        WebDriverWait(driver, 10).until(lambda d: "/login" in d.current_url)
        driver.get(url + "/runs")
        assert "/login" in driver.current_url, "still in after logging out"

        # A reader granted one mart sees no other table anywhere.
        login(driver, url, reader, reader_pw)
        leaked = {}
        for path in PAGES + ["/day?table=ad_performance", "/maturity?table=daily_campaign_performance"]:
            driver.get(url + path)
            text = driver.page_source
            for name in ["ad_performance", "daily_campaign_performance", "installs_rolling_7d",
                         "daily_campaign_projected", "fx_rates", "tidemark.slices"]:
                if name in text:
                    leaked.setdefault(path, []).append(name)
            shot = os.path.join(artifacts, "reader-" + ("overview" if path == "/" else path.strip("/").split("?")[0]) + ".png")
            driver.save_screenshot(shot)
        assert not leaked, f"the reader saw {leaked}"
        driver.get(url + "/marts")
        out["reader_marts"] = [h.get_attribute("data-mart") for h in driver.find_elements(By.CSS_SELECTOR, "h2.mart")]
    finally:
        driver.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
