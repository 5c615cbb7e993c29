"""`arena chain-spec new`, `arena key insert`, `arena node --chain`, and the address flags' guards."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from node.chainspec import finality_shortfall
from node.cli import build_parser
from node.cli.node import node_config
from node.genesis import load_chain_spec
from node.rpc import RpcServer
from p2p import NetworkConfig, NetworkConfigError
from runtime.crypto import Keypair
from runtime.executive import InvalidTransaction
from runtime.modules.balances import UNIT
from tests.helpers import ALICE, BOB, ROOT, NodeProcess, make_chain, sign

PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def arena(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def new_spec(tmp: Path, name: str = "spec.json", *extra: str) -> subprocess.CompletedProcess:
    return arena("chain-spec", "new", "--name", "Test Net", "--id", "test_net", "--authority", "alice",
                 "--authority", f"{BOB.address}=2000", "--endow", "alice=5000",
                 "--set", "system.epoch_length=10", "-o", str(tmp / name), *extra)


def test_new_spec_is_a_new_chain(tmp_path: Path) -> None:
    made = new_spec(tmp_path)
    assert made.returncode == 0, made.stderr
    assert new_spec(tmp_path, "again.json").returncode == 0
    spec, other, dev = (load_chain_spec(tmp_path / "spec.json"), load_chain_spec(tmp_path / "again.json"),
                        load_chain_spec(None))
    assert len({spec.genesis_hash, other.genesis_hash, dev.genesis_hash}) == 3  # a fresh genesis every time
    assert json.loads(made.stdout)["genesisHash"] == "0x" + spec.genesis_hash.hex()
    modules = spec.config["modules"]
    assert modules["session"]["authorities"] == [[ALICE.address, 1000 * UNIT], [BOB.address, 2000 * UNIT]]
    assert modules["balances"]["accounts"] == [[ALICE.address, 5000 * UNIT]]
    assert modules["system"]["epoch_length"] == 10 and spec.name == "Test Net"
    # an extrinsic signed for the dev chain is not valid on the new one (and vice versa)
    dev_chain, new_chain = make_chain(tmp_path / "dev-db"), make_chain(tmp_path / "new-db", tmp_path / "spec.json")
    for_dev = sign(dev_chain, ALICE, "system", "remark", [b"hi"], 0)
    dev_chain.check_for_pool(for_dev)
    with pytest.raises(InvalidTransaction, match="BadSignature|signature"):
        new_chain.check_for_pool(for_dev)
    new_chain.check_for_pool(sign(new_chain, ALICE, "system", "remark", [b"hi"], 0))


def test_new_spec_refuses_bad_input(tmp_path: Path) -> None:
    typo = new_spec(tmp_path, "a.json", "--set", "system.epoch_lenght=5")
    assert typo.returncode == 1 and "no parameter 'epoch_lenght'" in typo.stderr
    low = arena("chain-spec", "new", "--name", "N", "--id", "n", "--authority", "alice=5", "-o", str(tmp_path / "b.json"))
    assert low.returncode == 1 and "below the authority minimum" in low.stderr
    none = arena("chain-spec", "new", "--name", "N", "--id", "n", "-o", str(tmp_path / "c.json"))
    assert none.returncode == 1 and "at least one authority" in none.stderr
    assert new_spec(tmp_path).returncode == 0
    clobber = new_spec(tmp_path)
    assert clobber.returncode == 1 and "--force" in clobber.stderr
    assert not (tmp_path / "a.json").exists()


def test_key_insert_and_node_on_a_new_single_authority_chain(tmp_path: Path) -> None:
    key = Keypair.from_dev_name("solo-authority")
    made = arena("chain-spec", "new", "--name", "Solo", "--id", "solo", "--authority", "0x" + key.public_key.hex(),
                 "--endow", f"{key.address}=10", "--slot-ms", "500", "-o", str(tmp_path / "solo.json"))
    assert made.returncode == 0, made.stderr
    base = tmp_path / "node"
    inserted = arena("key", "insert", "--base-path", str(base), "--key", "//solo-authority", "--chain",
                     str(tmp_path / "solo.json"))
    assert inserted.returncode == 0 and "warning" not in inserted.stderr, inserted.stderr
    stored = base / "keystore" / "authority.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert arena("key", "insert", "--base-path", str(base), "--key", "//solo-authority").returncode == 0  # same key
    other = arena("key", "insert", "--base-path", str(base), "--key", "bob")
    assert other.returncode == 1 and "--force" in other.stderr
    not_authority = arena("key", "insert", "--base-path", str(tmp_path / "n2"), "--key", "bob", "--chain",
                          str(tmp_path / "solo.json"))
    assert "not a genesis authority" in not_authority.stderr
    # the node finds its key in the keystore and authors and finalizes the new chain alone
    node = NodeProcess(base, "--chain", str(tmp_path / "solo.json"), "--p2p-port", "0").start()
    try:
        client = node.client()
        assert client.call("system_chain") == "Solo"
        properties = client.call("system_properties")
        assert properties["genesisHash"] == "0x" + load_chain_spec(tmp_path / "solo.json").genesis_hash.hex()
        assert properties["tokenDecimals"] == 9  # what balances count in, also when the spec names no token
        deadline = 60
        start = time.monotonic()
        while client.call("system_health")["finalized"] < 2:
            assert time.monotonic() - start < deadline, node.log_path.read_text()[-2000:]
            time.sleep(0.3)
        author = client.call("chain_getHeader", client.call("chain_getBlockHash", 1))["author"]
        assert author in (key.address, "0x" + key.public_key.hex())
    finally:
        node.stop()


def parse_node(*flags: str):
    return node_config(build_parser().parse_args(["node", "--base-path", "/tmp/unused", *flags]))


def test_rpc_on_a_non_loopback_address_needs_rpc_external() -> None:
    with pytest.raises(ValueError, match="--rpc-external"):
        parse_node("--rpc-addr", "10.1.2.3:9933")
    assert not parse_node().rpc_refuse_unsafe and parse_node().rpc_host == "127.0.0.1"
    external = parse_node("--rpc-addr", "0.0.0.0:9944", "--rpc-external")
    assert (external.rpc_host, external.rpc_port, external.rpc_refuse_unsafe) == ("0.0.0.0", 9944, True)
    assert not parse_node("--rpc-addr", "0.0.0.0:9944", "--rpc-external", "--rpc-methods", "unsafe").rpc_refuse_unsafe
    assert parse_node("--rpc-methods", "safe").rpc_refuse_unsafe
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_node("--rpc-addr", "9933")
    flags = parse_node("--listen-addr", "/ip4/10.0.0.5/tcp/30333", "--allow-cidr", "10.0.0.0/24",
                       "--bootnodes", f"/ip4/10.0.0.6/tcp/30333/p2p/{PEER},/dns4/boot.example/tcp/1/p2p/{PEER}",
                       "--prometheus-addr", "10.0.0.5:9615")
    assert flags.allowed_cidrs == ("127.0.0.1/32", "10.0.0.0/24") and len(flags.bootnodes) == 2
    assert (flags.prometheus_host, flags.prometheus_port) == ("10.0.0.5", 9615)


def test_unsafe_methods_are_refused_when_told() -> None:
    server = RpcServer()

    @server.method("author_signWithNodeKey", unsafe=True)
    def signs() -> str:
        return "signed"

    request = {"jsonrpc": "2.0", "id": 1, "method": "author_signWithNodeKey", "params": []}
    assert trio.run(server.dispatch, request)["result"] == "signed"
    server.refuse_unsafe = True
    reply = trio.run(server.dispatch, request)
    assert "result" not in reply and "refused" in reply["error"]["message"]


def test_gate_and_addresses_are_checked(tmp_path: Path) -> None:
    genesis = bytes(32)
    with pytest.raises(NetworkConfigError, match="--allow-cidr"):  # loopback-only by default
        NetworkConfig(key_path=tmp_path / "k", genesis_hash=genesis, listen_addrs=("/ip4/10.0.0.5/tcp/1",))
    with pytest.raises(NetworkConfigError, match="--allow-cidr"):
        NetworkConfig(key_path=tmp_path / "k", genesis_hash=genesis, bootnodes=(f"/ip4/10.0.0.6/tcp/1/p2p/{PEER}",))
    config = NetworkConfig(key_path=tmp_path / "k", genesis_hash=genesis, allowed_cidrs=("10.0.0.0/24",),
                           listen_addrs=("/ip4/10.0.0.5/tcp/1",), public_addrs=("/dns4/node.example/tcp/1",),
                           bootnodes=(f"/ip4/10.0.0.6/tcp/1/p2p/{PEER}", f"/dns4/b.example/tcp/1/p2p/{PEER}"))
    assert config.listen_multiaddrs() == ["/ip4/10.0.0.5/tcp/1"]
    with pytest.raises(NetworkConfigError, match="allowed CIDR"):
        NetworkConfig(key_path=tmp_path / "k", genesis_hash=genesis, allowed_cidrs=("not-a-cidr",))


def test_finality_shortfall_names_the_problem() -> None:
    config = json.loads((ROOT / "genesis.json").read_text())
    addresses = [Keypair.from_dev_name(n).address for n in ("alice", "bob", "charlie", "dave")]
    assert finality_shortfall(config, addresses[:3]) is None
    assert "never be finalized" in (finality_shortfall(config, addresses[:2]) or "")
