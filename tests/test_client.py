"""The typed Python client (node/client.py) against a real `arena node --dev`: calls built from metadata alone,
signed, submitted and watched; storage decoded by declared types; events followed; bad values refused by type."""
from __future__ import annotations

import pytest

from node.client import ArenaClient, ClientError, to_raw
from runtime.crypto import Keypair
from tests.arena_helpers import UNIT
from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration

ALICE, BOB, DAVE = (Keypair.from_dev_name(n) for n in ("alice", "bob", "dave"))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("client") / "dev", "--dev").start()
    with ArenaClient(proc.url) as c:
        yield c
    proc.stop()


def example_value(t):
    """A value of a metadata type descriptor, built from the descriptor only (no knowledge of the call)."""
    if isinstance(t, str):
        return {"AccountId": BOB.address, "Balance": 2 * UNIT, "u64": 1, "u32": 1, "u8": 1, "Text": "cpu",
                "Role": "trainer"}[t]
    if "struct" in t:
        return {name: example_value(ft) for name, ft in t["struct"]}
    if "enum" in t:
        return t["enum"][-1]
    if "text" in t:
        return "cpu"
    raise AssertionError(f"no example for {t}")


def test_builds_signs_submits_and_watches_a_call_from_metadata_alone(client):
    meta = client.metadata
    transfer = meta["modules"]["balances"]["calls"]["transfer"]
    args = {a["name"]: example_value(a["type"]) for a in transfer["args"]}
    before = client.query("balances", "Account", BOB.address)["free"]
    call = client.compose_call("balances", "transfer", args)
    xt = client.create_signed_extrinsic(call, ALICE)
    fee = client.query_fee(xt)
    receipt = client.submit_and_watch(xt, wait_for="finalized")
    assert receipt.success and receipt.finalized and receipt.statuses[0] == "ready"
    assert receipt.block_hash and any(e["name"] == "Transfer" for e in receipt.events)
    assert client.query("balances", "Account", BOB.address)["free"] == before + 2 * UNIT
    paid = next(e for e in receipt.events if e["name"] == "ExtrinsicSuccess")["fields"]["fee"]
    assert paid == fee["partialFee"]


def test_struct_arguments_storage_structs_and_named_errors(client):
    # staking.bond then staking.heartbeat: the capabilities struct given by field names
    bond = client.submit_and_watch(client.create_signed_extrinsic(
        client.compose_call("staking", "bond", ["validator", 30 * UNIT]), DAVE))
    assert bond.success
    beat = client.compose_call("staking", "heartbeat", {"capabilities": {"available": 1, "device_kind": "cuda",
                                                                         "memory_mib": 8192}})
    assert beat.args == [[1, "cuda", 8192]]
    assert client.submit_and_watch(client.create_signed_extrinsic(beat, DAVE)).success
    stored = client.query("staking", "Heartbeat", DAVE.address)
    assert stored["device_kind"] == "cuda" and stored["memory_mib"] == 8192 and stored["available"] == 1
    assert client.query("staking", "Bonded", {"account": DAVE.address, "role": "validator"}) == 30 * UNIT
    assert client.view("arena_stakes", DAVE.address)["bonds"]["validator"] == 30 * UNIT
    # a call the runtime rejects: the receipt names the module's error
    low = client.submit_and_watch(client.create_signed_extrinsic(client.compose_call("staking", "bond", ["trainer", 1]), DAVE))
    assert not low.success and low.error["error"] == "BelowMinimum"


def test_values_that_do_not_fit_their_type_are_refused_before_signing(client):
    with pytest.raises(ClientError, match="no call 'trasnfer'"):
        client.compose_call("balances", "trasnfer", [])
    with pytest.raises(ClientError, match="missing argument"):
        client.compose_call("balances", "transfer", {"dest": BOB.address})
    with pytest.raises(ClientError, match="amount"):
        client.compose_call("balances", "transfer", [BOB.address, -1])
    with pytest.raises(ClientError, match="dest"):
        client.compose_call("balances", "transfer", ["not-an-address", 1])
    with pytest.raises(ClientError, match="3 fields"):
        client.compose_call("staking", "heartbeat", [[1, "cpu"]])
    assert to_raw("0x" + "ab" * 32, "Hash") == bytes([0xAB]) * 32


def test_subscribe_events_sees_a_transfer(client):
    submitted: list[str] = []

    def handler(header, events):
        if not submitted:  # submit once the subscription is live, so its block cannot be missed
            submitted.append(client.submit(client.create_signed_extrinsic(
                client.compose_call("balances", "transfer", [DAVE.address, UNIT]), ALICE)))
            return None
        transfers = [e for e in events if e["module"] == "balances" and e["name"] == "Transfer"
                     and e["fields"]["to"] == DAVE.address]
        return header["number"] if transfers else None

    number = client.subscribe_events(handler, timeout=30)
    assert client.view("arena_extrinsic", submitted[0])["blockNumber"] == number
