"""A real `arena node --dev` process: transfers over RPC, events, read proofs, crash recovery."""
import signal
import time

import pytest

from node.jsonfmt import unhex
from node.rpc_client import RpcClientError
from runtime.codec import decode
from runtime.merkle import ReadProof, verify_read_proof
from runtime.modules import balances
from tests.helpers import ALICE, BOB, CHARLIE, Keypair, NodeProcess

pytestmark = pytest.mark.integration


@pytest.fixture()
def node(tmp_path):
    proc = NodeProcess(tmp_path / "alice", "--dev").start()
    yield proc
    proc.stop()


def test_transfers_balances_events_and_read_proof(node):
    client = node.client()
    account = client.call("arena_account", BOB.address)
    before, reserved = account["free"], account["reserved"]
    result = client.submit_and_wait(ALICE, "balances", "transfer", [BOB.public_key, 12345])
    names = [(e["module"], e["name"]) for e in result["events"]]
    assert ("balances", "Transfer") in names and ("system", "ExtrinsicSuccess") in names
    transfer = next(e for e in result["events"] if e["name"] == "Transfer")
    assert transfer["data"] == [ALICE.address, BOB.address, 12345]
    assert client.call("arena_account", BOB.address)["free"] == before + 12345

    # read proof of Bob's account verifies against the header's state root
    key = balances.Account.key(BOB.public_key)
    proof = client.call("state_getReadProof", ["0x" + key.hex()])
    header = client.call("chain_getHeader", proof["at"])
    root = unhex(header["stateRoot"])
    value = verify_read_proof(root, key, ReadProof.decode(unhex(proof["proof"][0])))
    assert decode(value) == [before + 12345, reserved]
    # a tampered proof does not verify
    tampered = ReadProof.decode(unhex(proof["proof"][0]))
    bad = ReadProof(tampered.bucket, [(k, v + b"\x00") for k, v in tampered.entries], tampered.siblings)
    with pytest.raises(ValueError):
        verify_read_proof(root, key, bad)


def test_bad_inputs_get_specific_rpc_errors(node):
    client = node.client()
    good = client.sign(ALICE, "balances", "transfer", [BOB.public_key, 1])
    cases = {
        "0x00ff": 1001,
        "0x" + good[:-3].hex(): 1001,
    }
    for payload, code in cases.items():
        with pytest.raises(RpcClientError) as info:
            client.call("author_submitExtrinsic", payload)
        assert info.value.code == code
    bad_sig = bytearray(good)
    bad_sig[40] ^= 0xFF
    with pytest.raises(RpcClientError) as info:
        client.submit(bytes(bad_sig))
    assert info.value.code == 1002 and "signature" in info.value.message
    with pytest.raises(RpcClientError) as info:
        client.submit(client.sign(ALICE, "balances", "nope", []))
    assert info.value.code == 1007
    with pytest.raises(RpcClientError) as info:
        client.call("no_such_method")
    assert info.value.code == -32601
    # replay
    result = client.wait_for(client.submit(good))
    with pytest.raises(RpcClientError) as info:
        client.submit(good)
    assert info.value.code == 1003 and "stale" in info.value.message
    assert result["status"] == "inBlock"


def test_sigkill_loses_no_imported_block(tmp_path):
    node = NodeProcess(tmp_path / "n", "--dev").start()
    client = node.client()
    hashes = [client.submit(client.sign(CHARLIE, "balances", "transfer", [BOB.public_key, 7], nonce=i))
              for i in range(5)]
    for h in hashes:
        client.wait_for(h)
    time.sleep(1.5)
    best = client.call("chain_getHeader")
    account = client.call("arena_account", CHARLIE.address)
    node.kill(signal.SIGKILL)
    node.start()
    client = node.client()
    assert client.call("chain_getBlockHash", best["number"]) == best["hash"]
    assert client.call("arena_account", CHARLIE.address)["nonce"] == account["nonce"] == 5
    head = client.call("chain_getHeader")
    assert head["number"] >= best["number"]
    # state is consistent with the head: the stored tree root equals the head's state root
    key = balances.Account.key(CHARLIE.public_key)
    proof = client.call("state_getReadProof", ["0x" + key.hex()])
    header = client.call("chain_getHeader", proof["at"])
    verify_read_proof(unhex(header["stateRoot"]), key, ReadProof.decode(unhex(proof["proof"][0])))
    # and the chain keeps going
    client.wait_for(client.submit(client.sign(CHARLIE, "balances", "transfer", [BOB.public_key, 1])))
    node.stop()


def test_sigkill_under_load_at_varied_moments(tmp_path):
    """Kill the node while transfers stream in, at several offsets into a slot; nothing imported is lost."""
    import random
    import threading

    rng = random.Random(7)
    node = NodeProcess(tmp_path / "load", "--dev").start()
    sender = Keypair.from_dev_name("dave")
    seen: dict[int, str] = {}
    for round_number in range(4):
        client = node.client()
        stop = threading.Event()

        def stream(stop: threading.Event = stop) -> None:
            c = node.client()
            while not stop.is_set():
                try:
                    c.submit(c.sign(sender, "balances", "transfer", [BOB.public_key, 3]))
                except Exception:  # noqa: BLE001 - the node may be dying under us
                    return
                time.sleep(0.01)

        worker = threading.Thread(target=stream)
        worker.start()
        time.sleep(1.2 + rng.random())  # a different moment within the slot each round
        head = client.call("chain_getHeader")
        seen[head["number"]] = head["hash"]
        node.kill(signal.SIGKILL)
        stop.set()
        worker.join(timeout=10)
        node.start()
        client = node.client()
        for number, block_hash in seen.items():
            assert client.call("chain_getBlockHash", number) == block_hash, f"block #{number} lost (round {round_number})"
        account = client.call("arena_account", sender.address)
        key = balances.Account.key(sender.public_key)
        proof = client.call("state_getReadProof", ["0x" + key.hex()])
        header = client.call("chain_getHeader", proof["at"])
        value = verify_read_proof(unhex(header["stateRoot"]), key, ReadProof.decode(unhex(proof["proof"][0])))
        assert decode(value)[0] == account["free"]
    node.stop()


def test_websocket_subscription_to_new_and_finalized_heads(node):
    import json as jsonlib

    import trio
    from trio_websocket import open_websocket_url

    async def scenario() -> tuple[list[dict], list[dict], bool]:
        heads: list[dict] = []
        finals: list[dict] = []
        async with open_websocket_url(f"ws://127.0.0.1:{node.rpc_port}/") as ws:
            await ws.send_message(jsonlib.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads"}))
            sub_heads = jsonlib.loads(await ws.get_message())["result"]
            await ws.send_message(jsonlib.dumps({"jsonrpc": "2.0", "id": 2, "method": "chain_subscribeFinalizedHeads"}))
            sub_finals = jsonlib.loads(await ws.get_message())["result"]
            with trio.fail_after(15):
                while len(heads) < 2 or not finals:
                    msg = jsonlib.loads(await ws.get_message())
                    if msg.get("method") == "chain_newHead":
                        assert msg["params"]["subscription"] == sub_heads
                        heads.append(msg["params"]["result"])
                    elif msg.get("method") == "chain_finalizedHead":
                        assert msg["params"]["subscription"] == sub_finals
                        finals.append(msg["params"]["result"])
            # plain methods work on the same socket, and unsubscribing answers true
            await ws.send_message(jsonlib.dumps({"jsonrpc": "2.0", "id": 3, "method": "chain_unsubscribeNewHeads",
                                                 "params": [sub_heads]}))
            while True:
                msg = jsonlib.loads(await ws.get_message())
                if msg.get("id") == 3:
                    return heads, finals, msg["result"]

    heads, finals, unsubscribed = trio.run(scenario)
    assert heads[1]["number"] == heads[0]["number"] + 1 and heads[1]["parentHash"] == heads[0]["hash"]
    assert finals[0]["hash"] and unsubscribed is True


def test_node_refuses_a_busy_or_foreign_database(node, tmp_path):
    import json as jsonlib
    import subprocess
    import sys

    from tests.helpers import ROOT

    def arena_node(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "node.cli", "node", *args], check=False, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    busy = arena_node("--dev", "--base-path", str(node.base_path), "--rpc-port", "0")
    assert busy.returncode == 1 and "in use by another running node" in busy.stderr
    node.stop()
    config = jsonlib.loads((ROOT / "genesis.json").read_text())
    config["modules"]["system"]["randomness_seed"] = "another chain"
    other = tmp_path / "other-genesis.json"
    other.write_text(jsonlib.dumps(config))
    foreign = arena_node("--dev", "--base-path", str(node.base_path), "--genesis", str(other))
    assert foreign.returncode == 1 and "database holds chain with genesis" in foreign.stderr
