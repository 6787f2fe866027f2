"""Debian's headless chromium as the project drives it (browser tests and documentation screenshots).

Nothing is ever downloaded: Playwright launches the system browser. The flags keep chromium off the network
beyond localhost (this machine's closed network refuses its background connections otherwise).
"""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright):
    """A headless system chromium from a `sync_playwright()` context."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
