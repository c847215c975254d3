"""Render every page of the built documentation site in headless Chromium and fail on any
console message (a script error, a resource that did not load) or a page without content.

    python scripts/docs/check_site.py SITE_DIR [--chromium PATH] [--screenshots DIR]

``SITE_DIR`` is what ``mkdocs build`` wrote. The site is served from a local port, as a
reader's browser would load it. With ``--screenshots``, a few key pages are also saved as
PNG files there (CI keeps them as artifacts).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Chromium prints each console message (console.error, an uncaught exception, a failed
# resource load) to stderr with --enable-logging, at INFO level, tagged CONSOLE.
_CONSOLE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)\] (.*)")
_SCREENSHOTS = ("", "tutorial/", "reference/runner/", "types/")


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _chromium(chromium: str, profile: Path, *options: str) -> list[str]:
    return [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr",
            "--v=0", "--virtual-time-budget=3000", *options]


def check_page(chromium: str, url: str) -> list[str]:
    """The problems of one page: its console messages, or no rendered content."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([*_chromium(chromium, Path(profile), "--dump-dom"), url],
                              capture_output=True, text=True, timeout=120, check=False)
    problems = [f"console: {match.group(1)}" for match in _CONSOLE.finditer(done.stderr)]
    if done.returncode != 0:
        problems.append(f"chromium exited with {done.returncode}")
    elif "<article" not in done.stdout:
        problems.append("no article rendered")
    return problems


def screenshot(chromium: str, url: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([*_chromium(chromium, Path(profile), f"--screenshot={target}",
                                   "--window-size=1280,1600", "--hide-scrollbars"), url],
                       capture_output=True, timeout=120, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the folder mkdocs build wrote")
    parser.add_argument("--chromium", default="chromium", help="the browser to render with")
    parser.add_argument("--screenshots", type=Path, help="save key pages as PNG here")
    args = parser.parse_args(argv)
    pages = sorted(str(p.relative_to(args.site).parent) for p in args.site.rglob("index.html"))
    paths = ["" if page == "." else f"{page}/" for page in pages]
    server, base = _serve(args.site)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda path: (path, check_page(args.chromium, base + path)),
                                    paths))
        if args.screenshots is not None:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            for path in _SCREENSHOTS:
                name = (path.strip("/").replace("/", "-") or "home") + ".png"
                screenshot(args.chromium, base + path, args.screenshots / name)
    finally:
        server.shutdown()
    failed = [(path, problems) for path, problems in results if problems]
    for path, problems in failed:
        for problem in problems:
            print(f"{path or '/'}: {problem}", file=sys.stderr)
    print(f"{len(results)} page(s) rendered, {len(failed)} with problems")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    raise SystemExit(main())
