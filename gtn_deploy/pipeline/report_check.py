"""Look at report.html in a real headless Chromium (stdlib only): does it load offline, does
every image decode, does any text overflow its table, and a screenshot.

The page is opened from a copy with one script added that writes its findings into the DOM,
which ``--dump-dom`` prints; the network is off (every host resolves to nothing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Runs at the load event, when every image has loaded or failed (naturalWidth is 0 for one
# that could not be fetched or decoded); synchronous, so --dump-dom cannot overtake it.
# 1 px of slack for rounding.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const over = (el) => el.scrollWidth > el.clientWidth + 1;
  const name = (el) => (el.textContent || "").trim().slice(0, 60);
  const r = {
    viewport_width: window.innerWidth,
    page_width: document.documentElement.scrollWidth,
    page_height: document.documentElement.scrollHeight,
    images: imgs.map(i => ({alt: i.alt, natural_width: i.naturalWidth})),
    tables: document.querySelectorAll("table").length,
    overflowing_tables: [...document.querySelectorAll(".tablebox, table")]
      .filter(over).map(name),
    overflowing_cells: [...document.querySelectorAll("td, th, pre")].filter(over).map(name),
    network_requests: performance.getEntriesByType("resource").map(e => e.name),
  };
  const out = document.createElement("pre");
  out.id = "gtnd-check";
  out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    """A Chromium or Chrome binary ($CHROMIUM first), or None."""
    candidates = [os.environ.get("CHROMIUM", "")] + [shutil.which(n) or "" for n in
                                                     CHROMIUM_NAMES]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _run(browser: str, args: list[str], url: str, width: int, height: int,
         timeout_s: float) -> str:
    with tempfile.TemporaryDirectory(prefix="gtnd-chromium-") as profile:
        cmd = [browser, "--headless", "--disable-gpu", "--no-first-run", "--mute-audio",
               "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND",
               "--virtual-time-budget=5000", *args, url]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium refuses root with its sandbox on
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{browser} exited {done.returncode}: {done.stderr[-800:]}")
    return done.stdout


def check_page(html_path: str | Path, width: int = 1280, browser: str | None = None,
               timeout_s: float = 60) -> dict:
    """Open ``html_path`` (with the probe) at ``width`` px and return the probe's findings."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no chromium binary (apt-get install chromium)")
    html_path = Path(html_path).resolve()
    # beside the page (its relative links stay the same), one name per call
    fd, name = tempfile.mkstemp(prefix=f".{html_path.stem}.probe-", suffix=".html",
                                dir=html_path.parent)
    probed = Path(name)
    with os.fdopen(fd, "w") as f:
        f.write(html_path.read_text().replace("</body>", PROBE + "</body>", 1))
    try:
        dom = _run(browser, ["--dump-dom"], probed.as_uri(), width, 900, timeout_s)
    finally:
        probed.unlink(missing_ok=True)
    start = dom.find('<pre id="gtnd-check">')
    if start < 0:
        raise RuntimeError("the probe did not run: the page never finished loading")
    import html

    body = dom[start + len('<pre id="gtnd-check">'):dom.index("</pre>", start)]
    return json.loads(html.unescape(body))


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280,
               browser: str | None = None, timeout_s: float = 60) -> dict:
    """A full-page PNG of ``html_path`` at ``width`` px; returns check_page's findings."""
    found = check_page(html_path, width, browser, timeout_s)
    _run(browser or find_chromium(), [f"--screenshot={Path(png_path).resolve()}"],
         Path(html_path).resolve().as_uri(), width, found["page_height"], timeout_s)
    return found
