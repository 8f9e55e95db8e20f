"""Open every executed page in headless Chromium at 1280 px: measure sideways overflow, take screenshots.

For each ``results/NN_*/NN_*.html`` this writes into ``--out`` (default: a temporary folder, never the
repository) a first-screen and a mid-page screenshot, and prints, as measured by the browser: the
document's width against the window's, and every code input and output area whose content is wider
than its box (``scrollWidth > clientWidth``). Exit status 1 if any code input scrolls sideways.

    python scripts/check_pages_in_browser.py [--out DIR] [--chromium /usr/bin/chromium]

Needs Chromium (Debian: ``apt-get install chromium``); nothing else. The measurement runs as a
script injected into a copy of each page; the browser writes its result into the DOM it dumps.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 900
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}"]
MEASURE = """<script>
window.addEventListener("load", () => {
  const wide = (selector) => [...document.querySelectorAll(selector)]
    .filter((e) => e.scrollWidth > e.clientWidth + 1)
    .map((e) => ({kind: selector, over_px: e.scrollWidth - e.clientWidth,
                  text: e.innerText.slice(0, 60)}));
  const found = {document_px: document.documentElement.scrollWidth, window_px: window.innerWidth,
                 height_px: document.documentElement.scrollHeight,
                 inputs: wide(".jp-InputArea-editor, .highlight pre"),
                 outputs: wide(".jp-OutputArea-output")};
  const out = document.createElement("pre");
  out.id = "layout-measure";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""
SCROLL = "<style>body {{ margin-top: -{offset}px !important; }}</style>"


def chromium(binary: str, profile: Path, *args: str) -> str:
    """Run headless Chromium once with its own profile folder; return its stdout."""
    done = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    return done.stdout


def with_head(page: str, extra: str) -> str:
    """The page with ``extra`` inserted just before ``</head>``."""
    return page.replace("</head>", extra + "</head>", 1)


def check_page(page: Path, out: Path, binary: str) -> dict:
    """Measure one page's overflow and write its two screenshots; return the measurement."""
    work = Path(tempfile.mkdtemp(prefix="page-check-"))
    try:
        text = page.read_text()
        measured_page = work / "measure.html"
        measured_page.write_text(with_head(text, MEASURE))
        dom = chromium(binary, work / "profile", "--dump-dom", measured_page.as_uri())
        found = re.search(r'<pre id="layout-measure">(.*?)</pre>', dom, re.S)
        if not found:
            raise RuntimeError(f"Chromium did not report a measurement for {page}")
        measurement = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        first = out / f"{page.stem}_first.png"
        chromium(binary, work / "profile", f"--screenshot={first}", page.as_uri())
        middle_page = work / "middle.html"
        middle_page.write_text(with_head(text, SCROLL.format(offset=measurement["height_px"] // 2)))
        chromium(binary, work / "profile", f"--screenshot={out / f'{page.stem}_middle.png'}", middle_page.as_uri())
        return measurement
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    """Check every committed page; print one line per page and the overflowing areas."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    if not shutil.which(args.chromium):
        sys.exit(f"no Chromium at {args.chromium!r}: install it (Debian: apt-get install chromium)")
    out = args.out or Path(tempfile.mkdtemp(prefix="page-screenshots-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for page in sorted(REPO_ROOT.glob("results/[0-9][0-9]_*/[0-9][0-9]_*.html")):
        m = check_page(page, out, args.chromium)
        print(f"{page.stem}: document {m['document_px']} px in a {m['window_px']} px window, "
              f"{m['height_px']} px tall; {len(m['inputs'])} code inputs and {len(m['outputs'])} outputs "
              "wider than their box")
        for area in m["inputs"] + m["outputs"]:
            print(f"    {area['kind']}: {area['over_px']} px too wide: {area['text']!r}")
        failed |= bool(m["inputs"])
    print(f"screenshots: {out}")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
