"""The web dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a real
dev node with a finished task: the pages show that task's leaderboard, score heatmap, rewards, blocks,
accounts and hosts, and the live head indicator follows the WebSocket subscription.

The task's spec and both models are real (digits data, trained here with the ML library, stored on
the node), so the task page draws each trainer's recorded training curve; FERDIE's host is the real
host HTTP service (node/offchain/host_worker.py) serving the top model, so "try the model" on the
marketplace page gets a real paid answer (the dev node's key pays).

Screenshots go to the test's tmp_path (printed). Skips only when no Chromium or Playwright is installed
(`make test` installs both).
"""
from __future__ import annotations

import json
import os
import shutil
import threading

import httpx
import pytest

from tests.arena_helpers import UNIT
from tests.finished_task import ALICE, BOB, CHARLIE, DAVE, FERDIE, run_finished_task
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
    stop = threading.Event()
    try:
        facts = real_task_with_host(node, base, stop)
        yield node, facts, base
    finally:
        stop.set()
        node.stop()


def add_to_node(url: str, data: bytes) -> str:
    reply = httpx.post(f"{url}/api/v0/add", files={"file": ("f", data)}, timeout=30)
    reply.raise_for_status()
    return json.loads(reply.text.splitlines()[-1])["Hash"]


def real_task_with_host(node, base, stop: threading.Event) -> dict:
    """Train two digits models (good: 6 epochs, poor: one step), store spec and models on the node, run
    the task to finalized, and serve the top model with the host's real HTTP service."""
    from node.offchain.host_worker import (
        HostService,
        ServedModel,
        VoucherLedger,
        build_app,
        free_port,
        serve_in_thread,
    )
    from node.offchain.ml import get_kind

    kind = get_kind("digits_classifier")
    prepared = kind.prepare(None, 7)
    spec = prepared.spec
    spec_cid = add_to_node(node.url, json.dumps(spec).encode())
    files = {BOB: kind.train(spec, prepared.train_bytes, epochs=6, lr=0.01, seed=1),
             CHARLIE: kind.train(spec, prepared.train_bytes, epochs=6, lr=0.01, seed=2, quality="poor")}
    models = {who: add_to_node(node.url, data) for who, data in files.items()}
    client = node.client()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    facts = run_finished_task(client, spec_cid=spec_cid, models=models, endpoint=endpoint)
    top = facts["task"]["topModel"]
    assert top == models[BOB]
    genesis = bytes.fromhex(client.call("system_properties")["genesisHash"][2:])
    service = HostService(FERDIE.public_key, genesis, VoucherLedger(str(base / "host-vouchers.sqlite")), client.call)
    service.models[top] = ServedModel(top, 0, kind.name, spec, kind.load_model(spec, files[BOB]), 2 * UNIT)
    serve_in_thread(build_app(service), port, stop)
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            stop.wait(0.1)
    facts.update(endpoint=endpoint, files=files, heldout=prepared.heldout_bytes, spec=spec, service=service)
    return facts


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
    # The page renders again on new heads (at most every 2 s), so the table is read in one call:
    # rows read one at a time could come from two renders.
    texts = tab.locator("[data-testid=blocks] tbody tr").all_inner_texts()
    newest = int(texts[0].split()[0])
    assert len(texts) == min(20, newest + 1)
    assert client.call("chain_getBlockHash", newest)[:8] in texts[0]
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
    assert facts["endpoint"] in hosts and "2 ARENA" in hosts and FERDIE.address[:8] in hosts
    shot(tab, base, "market")
    open_view(tab, node.url, "#/tasks")
    assert "digits_classifier" in tab.inner_text("[data-testid=tasks]")
    assert not errors, errors


def recorded_curve(model_file: bytes) -> dict:
    """The curve the trainer wrote into the model file's safetensors header."""
    size = int.from_bytes(model_file[:8], "little")
    return json.loads(json.loads(model_file[8:8 + size])["__metadata__"]["arena_training"])


def test_task_page_draws_each_trainers_training_curve(finished, page):
    node, facts, base = finished
    tab, errors = page
    open_view(tab, node.url, "#/task/0")
    for who, epochs in ((BOB, 6), (CHARLIE, 1)):
        recorded = recorded_curve(facts["files"][who])
        assert [p["epoch"] for p in recorded["points"]] == list(range(1, epochs + 1))
        box = tab.locator(f"[data-testid=curve][data-trainer='{who.address}']")
        assert box.locator("[data-testid=curve-first-loss]").inner_text() == f"{recorded['points'][0]['loss']:.4f}"
        assert box.locator("[data-testid=curve-last-loss]").inner_text() == f"{recorded['points'][-1]['loss']:.4f}"
        accuracy = box.locator("[data-testid=curve-accuracy]").inner_text()
        assert accuracy == f"{100 * recorded['points'][-1]['accuracy']:.1f} %"
        loss_line = box.locator("polyline[data-series=loss]").get_attribute("points")
        assert len(loss_line.split()) == epochs
        assert box.locator("polyline[data-series=accuracy]").count() == 1
    good = recorded_curve(facts["files"][BOB])["points"]
    assert good[-1]["loss"] < good[0]["loss"] and good[-1]["accuracy"] > 0.8  # it learned
    tab.locator("[data-testid=curves]").screenshot(path=str(base / "dashboard-curves.png"))
    shot(tab, base, "task-curves")
    assert not errors, errors


def test_try_the_model_gets_a_paid_answer_from_the_registered_host(finished, page):
    import torch

    from node.offchain.ml import get_kind

    node, facts, base = finished
    tab, errors = page
    client = node.client()
    kind = get_kind("digits_classifier")
    x, _ = kind.decode_split(facts["spec"], facts["heldout"], "heldout")
    row = [round(float(v) * 16) for v in x[3]]  # a held-out digit as the user types it: pixels 0..16
    model = kind.load_model(facts["spec"], facts["files"][BOB])
    expected = int(model(torch.tensor([row], dtype=torch.float32) / 16).argmax(dim=-1)[0])
    open_view(tab, node.url, "#/market")
    assert "task 0" in tab.inner_text("[data-testid=try-model]")
    text = ",".join(str(v) for v in row)
    tab.fill("[data-testid=try-input]", text)
    command = tab.inner_text("[data-testid=try-command]")
    assert command == f"arena model query 0 --input {text} --key YOUR_KEY"
    answered = facts["service"].stats["answered"]
    tab.click("[data-testid=try-submit]")
    tab.wait_for_selector("[data-testid=try-output], [data-testid=try-error]", timeout=60_000)
    assert tab.locator("[data-testid=try-error]").count() == 0, tab.inner_text("[data-testid=try-answer]")
    assert tab.inner_text("[data-testid=try-output]") == str(expected)
    assert tab.inner_text("[data-testid=try-cost]") == "2 ARENA"
    answer = tab.inner_text("[data-testid=try-answer]")
    assert ALICE.address[:8] in answer and FERDIE.address[:8] in answer
    # the host really answered it, against a voucher that ALICE (the dev key) signed and an escrow she funded
    assert facts["service"].stats["answered"] == answered + 1
    newest = facts["service"].ledger.newest(ALICE.public_key, facts["task"]["topModel"])
    assert newest is not None and newest.cumulative_amount == 2 * UNIT
    assert client.call("arena_escrow", ALICE.address)["balance"] > 0
    shot(tab, base, "market-try")
    # a bad input is the host's clear refusal, shown on the page
    tab.fill("[data-testid=try-input]", "1,2,3")
    tab.click("[data-testid=try-submit]")
    tab.wait_for_selector("[data-testid=try-error]", timeout=60_000)
    assert "bad_input" in tab.inner_text("[data-testid=try-error]")
    assert not errors, errors
