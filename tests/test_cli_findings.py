"""CLI findings of issue 18, each against a real `arena node --dev`: `stake heartbeat` works, key names are
accepted wherever an account is, one unit convention, messages instead of tracebacks, `ipfs --rpc`, and the
history / selection / roles / timeline commands."""
from __future__ import annotations

import json

import pytest

from node import cli, keystore
from tests.finished_task import BOB, CHARLIE, DAVE, EVE, FERDIE, run_finished_task
from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("cli") / "dev", "--dev").start()
    yield proc
    proc.stop()


@pytest.fixture()
def keys_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(keystore, "DEFAULT_KEYSTORE", tmp_path / "keys")
    return tmp_path / "keys"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stake_heartbeat_sends_one_capabilities_list(node, capsys):
    rpc = ["--rpc", node.url]
    assert run(capsys, "stake", "bond", "host", "20", "--from", "eve", *rpc)[0] == 0
    code, _, err = run(capsys, "stake", "heartbeat", "--from", "eve", "--device", "cuda", "--memory-mib", "8192", *rpc)
    assert code == 0, err
    beat = node.client().call("arena_stakes", EVE.address)["heartbeat"]
    assert beat["deviceKind"] == "cuda" and beat["memoryMib"] == 8192 and beat["live"] is True


def test_key_names_are_accepted_wherever_an_account_is(node, capsys, keys_dir):
    rpc = ["--rpc", node.url]
    code, out, _ = run(capsys, "query", "balance", "bob", *rpc)
    assert code == 0 and json.loads(out)["address"] == BOB.address
    code, out, _ = run(capsys, "key", "inspect", "//dave")
    assert code == 0 and json.loads(out)["address"] == DAVE.address
    code, out, _ = run(capsys, "key", "generate", "--name", "val2")
    val2 = json.loads(out)["address"]
    assert run(capsys, "tx", "transfer", "--from", "alice", "--to", "val2", "--amount", "1.25", *rpc)[0] == 0
    assert node.client().call("arena_account", val2)["free"] == 1_250_000_000
    assert run(capsys, "tx", "transfer", "--from", "alice", "--to", "//charlie", "--amount", "1", *rpc)[0] == 0
    code, out, _ = run(capsys, "stake", "show", "val2", *rpc)
    assert code == 0 and json.loads(out)["address"] == val2
    code, _, err = run(capsys, "query", "balance", "nobody-by-this-name", *rpc)
    assert code == 1 and "is not an account" in err and "Traceback" not in err


def test_existing_key_name_is_a_message_not_a_traceback(capsys, keys_dir):
    assert run(capsys, "key", "generate", "--name", "mine")[0] == 0
    before = (keys_dir / "mine.json").read_text()
    code, _, err = run(capsys, "key", "generate", "--name", "mine")
    assert code == 1 and "already exists" in err and "Traceback" not in err
    assert (keys_dir / "mine.json").read_text() == before


@pytest.mark.parametrize("argv", [
    ["stake", "bond", "trainer", "nan", "--from", "bob"],
    ["tx", "transfer", "--from", "bob", "--to", "alice", "--amount", "inf"],
    ["tx", "transfer", "--from", "bob", "--to", "alice", "--amount", "-1u"],
    ["tx", "transfer", "--from", "bob", "--to", "alice", "--amount", "1.0000000001"],
    ["model", "query", "0", "--input", "hi", "--key", "bob", "--temperature", "nan"],
    ["ipfs", "cat", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", "--timeout", "nan"],
])
def test_bad_numbers_are_refused_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "error:" in err and "Traceback" not in err


def test_one_unit_convention_for_tips_and_amounts(node, capsys):
    rpc = ["--rpc", node.url]
    before = node.client().call("arena_account", CHARLIE.address)["free"]
    code, out, _ = run(capsys, "tx", "transfer", "--from", "charlie", "--to", "alice", "--amount", "2", "--tip", "0.5", *rpc)
    assert code == 0
    fee = next(e for e in json_events(out) if e[0] == "system.ExtrinsicSuccess")[1][1]
    assert before - node.client().call("arena_account", CHARLIE.address)["free"] == 2 * 10**9 + 5 * 10**8 + fee


def json_events(out: str) -> list:
    return [(line.split()[1], json.loads(line.strip().split(" ", 2)[2])) for line in out.splitlines()
            if line.startswith("  event ")]


def test_model_input_with_nan_is_a_message():
    from node.cli.model import _parse_input
    with pytest.raises(ValueError, match="not finite"):
        _parse_input("[NaN, 1, 2]")
    with pytest.raises(ValueError, match="not finite"):
        _parse_input("1,nan,2")
    assert _parse_input("1,2,3") == [1.0, 2.0, 3.0]


def test_ipfs_takes_rpc_like_every_other_command(node, capsys, tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("hello world\n")
    code, out, err = run(capsys, "ipfs", "add", str(path), "--rpc", node.url)
    assert code == 0, err
    assert "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o" in out
    code, _, err = run(capsys, "ipfs", "add", str(path), "--rpc", node.url, "--api", node.url)
    assert code == 2 and "not both" in err


def test_history_selection_roles_and_timeline_commands(node, capsys):
    rpc = ["--rpc", node.url]
    run_finished_task(node.client())
    code, out, _ = run(capsys, "task", "timeline", "0", *rpc)
    assert code == 0
    phases = [line.split()[1] for line in out.splitlines() if line.startswith("  #") and len(line.split()) == 2]
    assert phases == ["selection", "training", "model_reveal", "validation", "reveal", "finalized"]
    assert f"validator {DAVE.address} revealed scores" in out and f"trainer {BOB.address} submitted" in out
    assert f"trainer {BOB.address} committed its model" in out
    code, out, _ = run(capsys, "task", "selection", "0", *rpc)
    assert code == 0 and BOB.address in out and "selected validators" in out
    code, out, _ = run(capsys, "stake", "roles", *rpc)
    assert code == 0 and "trainer (minimum bond" in out and CHARLIE.address in out
    code, out, _ = run(capsys, "stake", "history", "bob", "--role", "trainer", *rpc)
    assert code == 0 and "best rank 1" in out and "task 0: rank 1" in out
    # the marketplace side: full CIDs and addresses, usage of a period, deregistering a host
    top = node.client().call("arena_topModel", 0)["modelCid"]
    code, out, _ = run(capsys, "model", "list", "--wide", *rpc)
    assert code == 0 and top in out and FERDIE.address in out
    code, out, _ = run(capsys, "model", "usage", "0", *rpc)
    assert code == 0 and f"model {top}" in out and "0 queries" in out
    code, _, err = run(capsys, "model", "deregister", "0", "--key", "ferdie", *rpc)
    assert code == 0, err
    assert node.client().call("arena_hosts", top) == []


@pytest.mark.parametrize(("extra", "message"), [
    (["--role", "planner", "--task", "no_such_kind"], "unknown task kind 'no_such_kind'"),
    (["--role", "planner", "--task", "custom_csv"], "needs a data file"),
    (["--role", "planner", "--task", "custom_csv:/nonexistent/train.csv"], "does not exist"),
    (["--role", "planner", "--task", "digits_classifier", "--windows", "10,x"], "--windows"),
    (["--role", "planner", "--task", "digits_classifier", "--windows", "10,20"], "three positive"),
    (["--role", "trainer", "--task", "digits_classifier"], "planner option"),
    (["--role", "planner", "--trainers", "0"], "--trainers must be positive"),
    (["--role", "trainer", "--bond", "0"], "--bond must be positive"),
    (["--role", "planner", "--reward", "0"], "--reward must be positive"),
    (["--role", "trainer", "--epochs", "0"], "--epochs must be positive"),
    (["--role", "trainer", "--nproc", "0"], "--nproc must be positive"),
    (["--role", "trainer", "--quality", "good,great"], "'great' is not one of good, poor, broken"),
    (["--role", "trainer", "--max-steps", "60,lots"], "'lots' is not a whole number"),
])
def test_workers_validate_their_options_at_start(extra, message, capsys, tmp_path):
    code = cli.main(["worker", "--key", "alice", "--rpc", "http://127.0.0.1:9", "--data-dir", str(tmp_path),
                     "--torch-threads", "0", *extra])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err


def test_worker_and_serve_amounts_are_arena_like_every_amount_flag(capsys, tmp_path):
    from node.cli import build_parser
    from node.cli.worker import build_contexts

    argv = ["worker", "--role", "planner", "--key", "alice", "--rpc", "http://127.0.0.1:9", "--data-dir", str(tmp_path),
            "--task", "digits_classifier"]
    (context,) = build_contexts(build_parser().parse_args([*argv, "--bond", "20", "--reward", "1.5"]))
    assert context.options["bond"] == 20 * 10**9
    assert context.options["tasks"][0]["reward"] == 1_500_000_000
    (context,) = build_contexts(build_parser().parse_args([*argv, "--bond", "20000000000u"]))
    assert context.options["bond"] == 20 * 10**9 and context.options["tasks"][0]["reward"] == 100 * 10**9
    serve = build_parser().parse_args(["model", "serve", "--key", "alice", "--bond", "2.5", "--price", "0.001"])
    assert (serve.bond, serve.price) == (2_500_000_000, 1_000_000)
    # the old base-unit spelling is refused with a message, not bonded as 2 * 10^19 units
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--bond", "20000000000"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "more than the chain holds" in err and "Traceback" not in err


def test_worker_device_cuda_is_refused_at_start_without_a_cuda_device(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    from node.cli import build_parser
    from node.cli.worker import build_contexts

    argv = ["worker", "--role", "trainer", "--key", "alice", "--rpc", "http://127.0.0.1:9", "--data-dir", str(tmp_path)]
    assert build_contexts(build_parser().parse_args([*argv, "--device", "auto"]))
    with pytest.raises(ValueError, match="--device cuda: torch sees no CUDA device"):
        build_contexts(build_parser().parse_args([*argv, "--device", "cuda"]))


def test_chain_spec_amounts_are_arena_and_accounts_any_key_name(capsys, tmp_path):
    from node.genesis import load_chain_spec

    out = tmp_path / "spec.json"
    code, _, err = run(capsys, "chain-spec", "new", "--name", "N", "--id", "n", "--authority", "//dave=100.5",
                       "--authority", "bob", "--endow", "alice=1.5", "--endow", "charlie=7u", "-o", str(out))
    assert code == 0, err
    modules = load_chain_spec(out).config["modules"]
    assert modules["session"]["authorities"] == [[DAVE.address, 100_500_000_000], [BOB.address, 1000 * 10**9]]
    assert modules["balances"]["accounts"] == [[keystore.resolve_key("alice").address, 1_500_000_000],
                                               [CHARLIE.address, 7]]
    # the old base-unit spelling is refused, and chain messages show ARENA beside base units
    code, _, err = run(capsys, "chain-spec", "new", "--name", "N", "--id", "n", "--authority", "alice",
                       "--endow", "alice=5000000000000", "-o", str(tmp_path / "b.json"))
    assert code == 1 and "--endow 'alice=5000000000000'" in err and "more than the chain holds" in err
    code, _, err = run(capsys, "chain-spec", "new", "--name", "N", "--id", "n", "--authority", "alice=5",
                       "-o", str(tmp_path / "c.json"))
    assert code == 1 and "stakes 5000000000 (5 ARENA), below the authority minimum 100000000000 (100 ARENA)" in err


def test_encrypted_key_files(capsys, keys_dir, monkeypatch):
    monkeypatch.setenv(keystore.PASSPHRASE_ENV, "correct horse battery")
    code, out, err = run(capsys, "key", "generate", "--name", "locked", "--encrypt")
    assert code == 0, err
    address = json.loads(out)["address"]
    stored = json.loads((keys_dir / "locked.json").read_text())
    assert "seed" not in stored and stored["encrypted"]["kdf"] == "scrypt"
    assert oct((keys_dir / "locked.json").stat().st_mode & 0o777) == "0o600"
    code, out, _ = run(capsys, "key", "inspect", "locked")
    assert code == 0 and json.loads(out)["address"] == address
    monkeypatch.setenv(keystore.PASSPHRASE_ENV, "wrong passphrase")
    code, _, err = run(capsys, "key", "inspect", "locked")
    assert code == 1 and "wrong passphrase" in err and "Traceback" not in err
    # the account of an encrypted key is known without its passphrase (its address field)
    monkeypatch.delenv(keystore.PASSPHRASE_ENV)
    assert keystore.resolve_account("locked") == keystore.key_file_account(keys_dir / "locked.json")
    code, _, err = run(capsys, "key", "inspect", "locked")  # no terminal under pytest, no passphrase given
    assert code == 1 and keystore.PASSPHRASE_ENV in err
    monkeypatch.setenv(keystore.PASSPHRASE_ENV, "short")
    code, _, err = run(capsys, "key", "generate", "--name", "weak", "--encrypt")
    assert code == 1 and "at least 8" in err and not (keys_dir / "weak.json").exists()


def test_any_call_and_storage_item_from_metadata(node, capsys):
    rpc = ["--rpc", node.url]
    client = node.client()
    before = client.call("arena_account", DAVE.address)["free"]
    code, out, err = run(capsys, "tx", "call", "balances", "transfer", '{"dest": "dave", "amount": "0.75"}',
                         "--from", "alice", "--wait", "finalized", *rpc)
    assert code == 0, err
    assert out.startswith("finalized in block") and "balances.Transfer" in out
    assert client.call("arena_account", DAVE.address)["free"] == before + 750_000_000
    code, out, _ = run(capsys, "query", "storage", "balances", "Account", '"dave"', *rpc)
    assert code == 0 and json.loads(out)["free"] == before + 750_000_000
    code, out, _ = run(capsys, "query", "metadata", "staking", *rpc)
    assert code == 0 and "heartbeat" in json.loads(out)["calls"]
    # refused before signing, with the argument named; a runtime failure names the module's error
    code, _, err = run(capsys, "tx", "call", "balances", "transfer", '{"dest": "dave", "amount": NaN}', "--from", "alice", *rpc)
    assert code == 1 and "NaN" in err and "Traceback" not in err
    code, _, err = run(capsys, "tx", "call", "balances", "transfer", '["dave", "-3"]', "--from", "alice", *rpc)
    assert code == 1 and "amount" in err.lower() and "Traceback" not in err
    code, _, err = run(capsys, "tx", "call", "staking", "bond", '["trainer", "0.000000001"]', "--from", "dave", *rpc)
    assert code == 1 and "BelowMinimum" in err
    # chain messages show amounts in ARENA too: "at least 10000000000 (10 ARENA)"
    minimum = client.call("arena_roles")["trainer"]["minStake"]
    assert f"{minimum} ({minimum // 10**9} ARENA)" in err
    code, _, err = run(capsys, "stake", "bond", "trainer", "0.5", "--from", "dave", *rpc)
    assert code == 1 and f"{minimum} ({minimum // 10**9} ARENA)" in err


def test_with_arena_annotates_amounts_only():
    assert cli.with_arena("fee 3204000 + tip 0 exceeds free balance 1500000000") == \
        "fee 3204000 (0.003204 ARENA) + tip 0 exceeds free balance 1500000000 (1.5 ARENA)"
    assert cli.with_arena("nonce 7 is stale, account is at 9; block 120") == "nonce 7 is stale, account is at 9; block 120"
    assert cli.with_arena("Qm123456789abc 0x12345678901") == "Qm123456789abc 0x12345678901"


def test_model_list_summarises_the_spec_input_and_classes():
    from node.cli.model import spec_summary
    digits = {"kind": "digits_classifier", "model": {"arch": "mlp", "input_dim": 64},
              "task": {"classes": 10, "input_scale": "pixel/16"}}
    assert spec_summary(digits) == ("64 numbers (pixel/16)", "10 classes (0..9)")
    table = {"kind": "custom_csv", "model": {"arch": "mlp", "input_dim": 3},
             "task": {"feature_columns": ["a", "b", "c"], "classes": ["cat", "dog"]}}
    assert spec_summary(table) == ("3 numbers: a, b, c", "cat, dog")
    assert spec_summary({"kind": "char_lm", "model": {"arch": "char_mlp"}, "task": {"vocab": ["<unk>", "a"]}})[0] == "text"
    assert spec_summary(None)[1] == "—"


def test_model_serve_stop(node, capsys, tmp_path):
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT
    data = tmp_path / "serve"
    argv = ["model", "serve", "--key", "alice", "--rpc", node.url, "--data-dir", str(data), "--port", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid_file = data / f"host-{keystore.resolve_key('alice').address}" / "serve.pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.exists(), "the host worker never wrote its pid file"
        # a second one for the same key and directory is refused
        code, _, err = run(capsys, *argv)
        assert code == 1 and "already runs" in err
        code, out, err = run(capsys, "model", "serve", "--stop", "--key", "alice", "--data-dir", str(data))
        assert code == 0, err
        assert f"stopped host worker pid {proc.pid}" in out
        assert proc.wait(timeout=10) is not None and not pid_file.exists()
        code, _, err = run(capsys, "model", "serve", "--stop", "--key", "alice", "--data-dir", str(data))
        assert code == 1 and "no host worker" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
