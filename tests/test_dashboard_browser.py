"""The web dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a real
dev node with a finished task: the pages show that task's leaderboard, score heatmap, rewards, blocks,
accounts and hosts, and the live head indicator follows the WebSocket subscription.

Screenshots go to the test's tmp_path (printed). Skips only when no Chromium or Playwright is installed
(`make test` installs both).
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.finished_task import BOB, CHARLIE, DAVE, FERDIE, run_finished_task
from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("ARENA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (make test does) to run the browser test")
    pytest.importorskip("playwright.sync_api", reason="pip package playwright is not installed (make venv installs it)")
    base = tmp_path_factory.mktemp("dashboard")
    node = NodeProcess(base / "dev", "--dev").start()
    try:
        facts = run_finished_task(node.client())
        yield node, facts, base
    finally:
        node.stop()


@pytest.fixture(scope="module")
def page(finished):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            yield tab, errors
        finally:
            browser.close()


def open_view(tab, url: str, route: str) -> str:
    tab.goto(f"{url}/ui/{route}")
    tab.wait_for_function("r => document.getElementById('view').dataset.rendered === r", arg=route or "#/chain")
    return tab.inner_text("#view")


def shot(tab, base, name: str) -> None:
    path = base / f"dashboard-{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_task_page_shows_leaderboard_heatmap_and_rewards(finished, page):
    node, facts, base = finished
    tab, errors = page
    client = node.client()
    board = client.call("arena_leaderboard", 0)
    text = open_view(tab, node.url, "#/task/0")
    assert "finalized" in tab.inner_text("[data-testid=task-status]")
    assert tab.inner_text("[data-testid=top-model]") == facts["task"]["topModel"]
    # the leaderboard rows: rank, trainer, the chain's consensus score, reward in ARENA
    rows = tab.locator("[data-testid=leaderboard] tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).inner_text()
    assert first.startswith("1") and str(board["entries"][0]["consensusScore"]) in first
    assert BOB.address[:8] in first and CHARLIE.address[:8] in rows.nth(1).inner_text()
    decimals = client.call("system_properties")["tokenDecimals"]
    whole = board["entries"][0]["reward"] // 10**decimals
    assert f"{whole}" in first and "ARENA" in first
    # held-out loss in nats from the consensus score (inv_loss_v1): 10**9 / 890_000_000 - 1
    assert f"{10**9 / board['entries'][0]['consensusScore'] - 1:.4f}" in first
    # heatmap: one row per revealing validator with each revealed score, coloured by the page
    heat = tab.locator("[data-testid=heatmap]")
    assert "910000000" in heat.inner_text() and "420000000" in heat.inner_text()
    colours = heat.locator("td[data-heat]").evaluate_all("cells => cells.map(c => getComputedStyle(c).backgroundColor)")
    assert len(colours) == 4 and len(set(colours)) > 1
    assert "reveal" in tab.inner_text("[data-testid=timeline]")
    assert DAVE.address[:8] in tab.inner_text("[data-testid=validator-rewards]")
    assert "validator" in text.lower()
    shot(tab, base, "task")
    assert not errors, errors


def test_chain_pages_show_blocks_events_and_live_heads(finished, page):
    node, _, base = finished
    tab, errors = page
    client = node.client()
    open_view(tab, node.url, "#/chain")
    best_before = client.call("system_health")["best"]
    rows = tab.locator("[data-testid=blocks] tbody tr")
    newest = int(rows.nth(0).inner_text().split()[0])
    assert rows.count() == min(20, newest + 1)
    assert client.call("chain_getBlockHash", newest)[:8] in rows.nth(0).inner_text()
    # live: the header's best head advances past what the page loaded with, pushed over the WebSocket
    tab.wait_for_function("n => /best #(\\d+)/.test(document.getElementById('heads').textContent) && "
                          "Number(document.getElementById('heads').textContent.match(/best #(\\d+)/)[1]) > n",
                          arg=best_before, timeout=20_000)
    assert tab.inner_text("[data-testid=live]") == "live"
    shot(tab, base, "chain")
    # the block that included the task's creation, with its events
    found = None
    for number in range(1, best_before + 1):
        detail = client.call("arena_blockDetail", number)
        if any(x.get("call", {}).get("function") == "create" for x in detail["extrinsics"]):
            found = number
            break
    assert found is not None
    text = open_view(tab, node.url, f"#/block/{found}")
    assert "tasks.create" in tab.inner_text("[data-testid=extrinsics]")
    assert "tasks.TaskCreated" in tab.inner_text("[data-testid=events]")
    assert f"Block #{found}" in text
    shot(tab, base, "block")
    assert not errors, errors


def test_account_and_market_pages(finished, page):
    node, facts, base = finished
    tab, errors = page
    client = node.client()
    open_view(tab, node.url, f"#/account/{BOB.address}")
    stakes = tab.inner_text("[data-testid=stakes]")
    assert "trainer" in stakes and "20 ARENA" in stakes
    history = tab.inner_text("[data-testid=history]")
    assert "trainer" in history and "1" in history
    free = client.call("arena_account", BOB.address)["free"]
    decimals = client.call("system_properties")["tokenDecimals"]
    assert tab.inner_text("[data-testid=free]").startswith(str(free // 10**decimals))
    shot(tab, base, "account")
    text = open_view(tab, node.url, "#/accounts")
    assert "host" in tab.inner_text("[data-testid=roles]") and FERDIE.address[:8] in text
    # the form navigates to the account page
    tab.fill("[data-testid=address-input]", DAVE.address)
    tab.press("[data-testid=address-input]", "Enter")
    tab.wait_for_function("a => document.getElementById('view').dataset.rendered === '#/account/' + a", arg=DAVE.address)
    assert "validator" in tab.inner_text("[data-testid=stakes]")
    text = open_view(tab, node.url, "#/market")
    assert facts["task"]["topModel"] in text
    hosts = tab.inner_text("[data-testid=hosts]")
    assert "http://127.0.0.1:9/v1" in hosts and "2 ARENA" in hosts and FERDIE.address[:8] in hosts
    shot(tab, base, "market")
    open_view(tab, node.url, "#/tasks")
    assert "digits_classifier" in tab.inner_text("[data-testid=tasks]")
    assert not errors, errors
