"""Tier 3: the web page over a store made by a real learning run (the embedded 0.5B as policy and reflector, a small
budget), clicked through in a real headless Chromium: every lesson, gate and rollout the run recorded is on the page
with the store's own figures, the learning curve it drew is shown, and no page logs a console error."""
from __future__ import annotations

import pytest
from browser import console_errors, shot
from responder import serve_in_thread
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from secondnature.cli import main
from secondnature.store import open_store
from secondnature.web import make_ui

pytestmark = pytest.mark.real
TASKSET = "letters:medium,hard"


@pytest.fixture(scope="module")
def learned(tmp_path_factory, policy_path):
    root = tmp_path_factory.mktemp("learned")
    store_path, results = root / "store.db", root / "results"
    results.mkdir()
    assert main(["--store", str(store_path), "learn", TASKSET, "--budget", "40", "--val-size", "6",
                 "--tasks-per-step", "2", "--group-size", "3", "--reflector", "default", "--max-tokens", "200",
                 "--skill-samples", "0", "--plot", str(results / "curve.png")]) == 0
    opened = {}
    url, server = serve_in_thread(make_ui(lambda _r: opened.setdefault("s", open_store(store_path)),
                                          results=(results,)))
    yield url.removesuffix("/v1"), open_store(store_path)
    server.should_exit = True


def rows(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "tr[data-row]")


def test_every_record_of_a_real_run_is_on_the_page(learned, driver, tmp_path):
    url, store = learned
    active = store.lessons(TASKSET, "active")
    driver.get(f"{url}/lessons?scope={TASKSET}")
    assert len(rows(driver)) == len(active)
    for x in active:  # each lesson's own text (its first line: the table shows a card of a long one)
        assert x.text.splitlines()[0][:60] in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, tmp_path, "real-lessons")
    gates = store.gates(TASKSET)
    assert gates, "a run of two steps gates at least one candidate"
    driver.get(f"{url}/gates?scope={TASKSET}")
    shown = rows(driver)
    assert len(shown) == len(gates)
    for g, row in zip(reversed(gates), shown):  # newest first, with the store's figures
        assert row.find_element(By.CSS_SELECTOR, "td[data-label=won]").text == str(g.wins)
        assert row.find_element(By.CSS_SELECTOR, "td[data-label=lost]").text == str(g.losses)
        assert row.find_element(By.CSS_SELECTOR, "td[data-label=p]").text == f"{g.p_value:.3f}"
    for g in gates:
        driver.get(f"{url}/gates/{g.id}")
        items = rows(driver)
        # the gate's paired attempts, found among the run's validation rollouts: those its figures count, and for a
        # confirmed gate the first sample's too
        assert sum(r.get_attribute("class") == "won" for r in items) >= g.wins
        assert sum(r.get_attribute("class") == "lost" for r in items) >= g.losses
    for x in active:
        driver.get(f"{url}/lessons/{x.id}")
        assert f"Evidence: {len(x.evidence)} rollouts" in driver.find_element(By.TAG_NAME, "main").text
    assert not console_errors(driver)


def test_rollouts_and_the_learning_curve_of_a_real_run(learned, driver, tmp_path):
    url, store = learned
    total = store.db.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0]
    driver.get(f"{url}/rollouts")
    assert f"{total} in all" in driver.find_element(By.TAG_NAME, "main").text
    first = rows(driver)[0].find_element(By.TAG_NAME, "a")
    rid = first.get_attribute("href").rsplit("/", 1)[-1]
    driver.get(first.get_attribute("href"))
    r = store.rollout(rid)
    assert r.completion.strip().splitlines()[0][:40] in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, tmp_path, "real-rollout")
    driver.get(f"{url}/curves")
    img = driver.find_element(By.CSS_SELECTOR, ".gallery img")
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return arguments[0].complete", img))
    assert driver.execute_script("return arguments[0].naturalWidth", img) > 100
    run = store.last_run(TASKSET)
    assert str(run["rollouts_used"]) in driver.find_element(By.CSS_SELECTOR, "table.runs").text
    assert not console_errors(driver)


def test_a_hand_edit_on_the_page_of_a_real_run_shows_in_the_diff(learned, driver):
    """A person's lesson added to the real run's scope, then edited on the page: the diff of the two revisions
    names both, and the edit went through the lesson screen into the store."""
    from secondnature.hand import import_lessons
    url, store = learned
    before = import_lessons(store, {TASKSET: [{"text": "Spell the word out, then count the letter."}]}, "by hand")
    added = store.revision_lessons(before[0].revision)[-1]
    driver.get(f"{url}/lessons/{added.id}")
    driver.find_element(By.CSS_SELECTOR, "details.edit summary").click()
    area = driver.find_element(By.ID, "edit-text")
    area.clear()
    area.send_keys("Spell the word out letter by letter, then count the letter.")
    old = driver.current_url
    area.submit()
    WebDriverWait(driver, 10).until(lambda d: d.current_url != old)
    after = store.head(TASKSET)
    driver.get(f"{url}/revisions/diff?a={before[0].revision.id}&b={after.id}")
    assert "Spell the word out, then" in driver.find_element(By.CSS_SELECTOR, ".diff .del").text
    assert "letter by letter" in driver.find_element(By.CSS_SELECTOR, ".diff .add").text
    assert not console_errors(driver)
