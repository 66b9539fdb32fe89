"""Screenshots of the web page over a store, for docs/img/: every page, in a real headless Chromium.

    python scripts/screenshots.py STORE [--results DIR] [--out docs/img]

The screenshots in docs/img/ are of the store `secondnature demo` made (learning pages), and of the synthetic store of
tests/test_web.py for the traffic and sign-in pages (SECONDNATURE_SCREENSHOTS=DIR pytest tests/test_web.py)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium  # noqa: E402  (tests/, for the same browser the tests drive)
from responder import serve_in_thread  # noqa: E402

from secondnature.store import open_store  # noqa: E402
from secondnature.web import make_ui  # noqa: E402


def full(driver, path: Path) -> None:
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 2000)")
    driver.set_window_size(1280, height + 120)
    for _ in range(50):  # lazy images load once the taller window shows them
        if driver.execute_script("return Array.from(document.images).every(i => i.complete)"):
            break
        time.sleep(0.1)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--results", type=Path, action="append", default=[])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    store = open_store(args.store)
    lessons = store.lessons(status="active")
    gates = store.gates()
    accepted = [g for g in gates if g.decision == "accepted"]
    revs = store.revisions()
    store.close()
    opened: dict = {}
    url, server = serve_in_thread(make_ui(lambda _r: opened.setdefault("s", open_store(args.store)),
                                          results=tuple(args.results)))
    base = url.removesuffix("/v1")
    pages = {"lessons": "/lessons", "gates": "/gates", "revisions": "/revisions", "curves": "/curves",
             "rollouts": "/rollouts"}
    if lessons:
        pages["lesson"] = f"/lessons/{lessons[-1].id}"
    if accepted:
        pages["gate"] = f"/gates/{accepted[-1].id}"
    if len(revs) >= 2:
        pages["diff"] = f"/revisions/diff?a={revs[-2].id}&b={revs[-1].id}"
    args.out.mkdir(parents=True, exist_ok=True)
    driver = chromium()
    try:
        for name, page in pages.items():
            driver.get(base + page)
            full(driver, args.out / f"{name}.png")
            print(args.out / f"{name}.png")
        driver.get(base + "/rollouts")
        first = driver.find_element("css selector", "tr[data-row] a").get_attribute("href")
        driver.get(first)
        full(driver, args.out / "rollout.png")
        print(args.out / "rollout.png")
    finally:
        driver.quit()
        server.should_exit = True


if __name__ == "__main__":
    main()
