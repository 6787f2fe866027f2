"""Screenshots of the real Dagster UI for `docs/ui-tour.md`, at 1280x800, in Debian's headless chromium.

    uv run python docs/screenshots/take_dagster_ui.py --data-dir DIR

DIR is a DATA_DIR that already holds a demo-like state with its instance in DIR/dagster_home: for example
`benchmarks/bench_backfill.py --dir X` leaves one in X/data, and `DATA_DIR=X cliniko-reviews demo` in X.
Starts `dagster-webserver -w workspace.yaml` on a free loopback port over that state (read-only: the UI
launches nothing), saves the PNGs next to this script, and stops the webserver.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import click
import httpx
from playwright.sync_api import Page, sync_playwright

from pipeline.demo import wait_until
from pipeline.sandbox.browser import launch_chromium
from pipeline.settings import PROJECT_ROOT

HERE = Path(__file__).resolve().parent
VIEWPORT = {"width": 1280, "height": 800}


def _expand_groups(page: Page) -> None:
    page.keyboard.press("Alt+e")  # the graph's "Expand all groups" shortcut


def _show_plots(page: Page) -> None:
    """The overview's metadata as plots over partitions, scrolled down to the first rows of plots."""
    page.get_by_role("button", name="Plots").first.click()
    page.get_by_text("eligible", exact=True).first.wait_for(timeout=30_000)
    page.mouse.move(600, 500)
    page.mouse.wheel(0, 400)


def _show_mapping_view(page: Page) -> None:
    """The partition's metadata scrolled to its mapping view (`mapping`, `last_14_days`)."""
    page.get_by_text("last_14_days", exact=True).first.scroll_into_view_if_needed()


# A partition of the demo's state (`DATA_DIR=X cliniko-reviews demo` today): its first mapping, on its last
# day (yesterday).
MAPPING_PARTITION = f"{datetime.now(UTC).date() - timedelta(days=1)}|159894373919788"

# (file, path in the UI, a text that appears once the view has its data, what to do before the shot)
SHOTS: list[tuple[str, str, str, Callable[[Page], None] | None]] = [
    ("dagster-asset-graph.png", "/asset-groups", "birdeye", _expand_groups),
    ("dagster-partitions.png", "/assets/appointment_eligibility?view=partitions", "Materialized", None),
    ("dagster-plots.png", "/assets/appointment_eligibility", "Plots", _show_plots),
    ("dagster-checks.png", "/assets/appointment_eligibility?view=checks", "counts_reconcile", None),
    (
        "dagster-partition-mapping.png",
        f"/assets/appointment_eligibility?view=partitions&partition={quote(MAPPING_PARTITION)}",
        "last_14_days",
        _show_mapping_view,
    ),
    ("dagster-automation.png", "/automation", "calendar_sensor", None),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def webserver(data_dir: Path) -> Iterator[str]:
    """The Dagster webserver over `data_dir`'s instance, in a session of its own (stopped as a group)."""
    env = {**os.environ, "DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "dagster_home")}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port), "--read-only"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            try:
                wait_until(
                    lambda: httpx.get(f"{url}/server_info", timeout=2).is_success,
                    "dagster-webserver",
                    process,
                    180,
                )
            except click.ClickException as exc:
                log.seek(0)
                raise RuntimeError(
                    f"dagster-webserver did not come up:\n{log.read().decode()[-3000:]}"
                ) from exc
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def shoot(page: Page, url: str, ready_text: str, action: Callable[[Page], None] | None, path: Path) -> None:
    page.goto(url)
    page.get_by_text(ready_text, exact=False).first.wait_for(timeout=90_000)
    if action is not None:
        action(page)
    page.wait_for_timeout(3_000)  # the UI fills in counts and plots after its first paint
    skip = page.get_by_role("button", name="Skip")
    if skip.is_visible():  # the community prompt can open after the page is ready
        skip.click()
        page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    print(f"saved {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="A DATA_DIR with a demo-like state.")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", action="append", metavar="FILE", help="only this screenshot (repeatable)")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    if not (data_dir / "dagster_home").is_dir():
        raise SystemExit(
            f"{data_dir}/dagster_home does not exist: run the demo or the backfill benchmark first"
        )
    with webserver(data_dir) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            # On a new instance the UI asks to join its community, over whichever page is open: skip it.
            skip = page.get_by_role("button", name="Skip")
            page.add_locator_handler(skip, lambda button: button.click())
            for name, path, ready_text, action in SHOTS:
                if not args.only or name in args.only:
                    shoot(page, url + path, ready_text, action, args.out / name)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
