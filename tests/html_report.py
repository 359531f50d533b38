"""Checks a `plot --html` report as a person sees it, in a real headless browser.

Usage: python tests/html_report.py REPORT.html SOURCE.json SCREENSHOT.png [MIN_CHARTS [MAX_HEIGHT]]

Opens the page in Chromium (through Selenium and Debian's chromedriver, nothing downloaded)
and fails unless:
- the page loaded without a console error and fetched nothing (no script, font, stylesheet
  or image from anywhere: the report is one self-contained file);
- it has at least MIN_CHARTS charts and every chart's SVG is drawn with a non-zero size;
- every number carrying `data-key` equals the value at that path of SOURCE.json (the
  `summary.json`, `sweep.json` or comparison JSON the page was made from), both as written
  (`data-value`) and as shown (the text, to the precision it shows).
Then it saves a screenshot of the page, whole or its top MAX_HEIGHT pixels. Prints one line of what it checked.
"""

import json
import math
import os
import re
import shutil
import sys


def resolve(doc, key):
    """The value at a dotted path (`metrics.ttft_ms.intervals.p99.0`)."""
    v = doc
    for part in key.split("."):
        if isinstance(v, list):
            v = v[int(part)]
        elif isinstance(v, dict) and part in v:
            v = v[part]
        else:
            raise KeyError(f"{key}: no `{part}`")
    return v


def shown_matches(text, value):
    """Whether the text shown rounds `value` to the digits it shows (`12.35`, `1.23e-4`,
    `+4.31%`: the caller scales a percentage)."""
    t = text.strip().replace(",", "").rstrip("%")
    m = re.fullmatch(r"[-+]?\d+(?:\.(\d+))?(?:e([-+]?\d+))?", t)
    if not m:
        return False
    unit = 10.0 ** (-len(m.group(1) or "")) * 10.0 ** int(m.group(2) or 0)
    return abs(float(t) - value) <= 0.5 * unit * (1 + 1e-9) + 1e-12


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    report, source, shot = sys.argv[1:4]
    min_charts = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    max_height = int(sys.argv[5]) if len(sys.argv) > 5 else 16000
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        sys.exit("no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        driver.get("file://" + os.path.abspath(report))
        state = driver.execute_script("return document.readyState")
        assert state == "complete", f"{report}: page state {state}"
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, f"{report}: console errors: {errors}"
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert not fetched, f"{report}: the page fetched {fetched}; it must be self-contained"
        charts = driver.execute_script("""
            return [...document.querySelectorAll('figure.chart')].map(f => {
              const s = f.querySelector('svg');
              const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};
              return [f.id, r.width, r.height, s ? s.querySelectorAll('*').length : 0];
            });""")
        assert len(charts) >= min_charts, f"{report}: {len(charts)} charts, expected {min_charts} or more"
        for cid, w, h, elements in charts:
            assert w > 0 and h > 0, f"{report}: chart {cid} is drawn {w}x{h}"
            assert elements > 20, f"{report}: chart {cid} has {elements} elements"
        with open(source) as f:
            doc = json.load(f)
        cells = driver.execute_script("""
            return [...document.querySelectorAll('[data-key]')].map(e =>
              [e.dataset.key, e.dataset.value, e.innerText, e.dataset.scale || "1"]);""")
        assert cells, f"{report}: no numbers keyed to {source}"
        for key, written, text, scale in cells:
            want = resolve(doc, key)
            assert isinstance(want, (int, float)), f"{report}: {key} is {want!r} in {source}"
            got = float(written)
            assert got == float(want) or math.isclose(got, want, rel_tol=1e-15), \
                f"{report}: {key} = {written} on the page, {want} in {source}"
            assert shown_matches(text, float(want) * float(scale)), \
                f"{report}: {key} shown as {text!r}, {want} in {source}"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(height, 900), max_height))
        assert driver.save_screenshot(shot), f"{shot}: not written"
    finally:
        driver.quit()
    print(f"{report}: {len(cells)} numbers equal to {os.path.basename(source)}, "
          f"{len(charts)} charts drawn, no console error, nothing fetched; screenshot {shot}")


if __name__ == "__main__":
    main()
