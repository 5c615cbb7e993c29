"""Every way an extrinsic can be rejected, and what a failed call still costs."""
import pytest

from runtime.codec import encode
from runtime.executive import InvalidTransaction
from runtime.modules import balances, system
from runtime.types import MAX_EXTRINSIC_SIZE, Era
from tests.helpers import ALICE, BOB, make_chain, sign


@pytest.fixture()
def chain(tmp_path):
    c = make_chain(tmp_path / "db")
    yield c
    c.store.close()


def check(chain, encoded):
    return chain.check_for_pool(encoded)


def rejects(chain, encoded, kind, fragment=""):
    with pytest.raises(InvalidTransaction) as info:
        check(chain, encoded)
    assert info.value.kind == kind, info.value
    assert fragment in info.value.message
    return info.value


def transfer(chain, nonce=0, amount=10, **kw):
    return sign(chain, ALICE, "balances", "transfer", [BOB.public_key, amount], nonce, **kw)


def test_valid_transfer_passes(chain):
    checked = check(chain, transfer(chain))
    assert checked.nonce_gap == 0 and checked.fee > 0


def test_malformed_bytes(chain):
    rejects(chain, b"\x93\x01\x02", "BadFormat")
    rejects(chain, b"garbage", "BadFormat")


def test_wrong_signature(chain):
    xt = bytearray(transfer(chain))
    xt[40] ^= 1  # inside the signature
    rejects(chain, bytes(xt), "BadSignature")


def test_signed_by_other_key(chain):
    from runtime.types import Call, Extrinsic, signing_payload
    call = Call("balances", "transfer", [BOB.public_key, 5])
    payload = signing_payload(call, 0, Era(0, 0), 0, chain.spec.genesis_hash, 1, chain.spec.genesis_hash)
    xt = Extrinsic(ALICE.public_key, BOB.sign(payload), 0, Era(0, 0), 0, call).encode()
    rejects(chain, xt, "BadSignature")


def test_wrong_genesis_hash(chain):
    rejects(chain, transfer(chain, genesis_hash=b"\x01" * 32), "BadSignature", "genesis")


def test_stale_and_future_nonce(chain):
    chain.build_block(ALICE, 1, 1000, [transfer(chain, 0)])
    err = rejects(chain, transfer(chain, 0), "Stale")
    assert "account is at 1" in err.message
    assert check(chain, transfer(chain, 5)).nonce_gap == 4


def test_replay_of_included_extrinsic(chain):
    xt = transfer(chain, 0)
    block, _, _ = chain.build_block(ALICE, 1, 1000, [xt])
    assert block.extrinsics == [xt]
    rejects(chain, xt, "Stale")
    block2, _, rejected = chain.build_block(ALICE, 2, 2000, [xt])
    assert block2.extrinsics == [] and rejected[0][1].kind == "Stale"


def test_expired_and_unborn_era(chain):
    for slot in range(1, 6):
        chain.build_block(ALICE, slot, slot * 1000, [])
    birth = chain.store.canonical_hash(1)
    rejects(chain, transfer(chain, era=Era(1, 2), birth_hash=birth), "BadEra", "expired")
    rejects(chain, transfer(chain, era=Era(50, 4), birth_hash=birth), "BadEra")
    ok = check(chain, transfer(chain, era=Era(4, 8), birth_hash=chain.store.canonical_hash(4)))
    assert ok.extrinsic.era.period == 8
    rejects(chain, transfer(chain, era=Era(4, 8), birth_hash=birth), "BadSignature")


def test_unknown_module_and_call(chain):
    rejects(chain, sign(chain, ALICE, "nosuch", "x", [], 0), "UnknownCall", "unknown module")
    rejects(chain, sign(chain, ALICE, "balances", "steal", [], 0), "UnknownCall", "no call 'steal'")


def test_wrong_argument_types(chain):
    rejects(chain, sign(chain, ALICE, "balances", "transfer", [b"short", 1], 0), "BadArguments", "dest")
    rejects(chain, sign(chain, ALICE, "balances", "transfer", [BOB.public_key, -1], 0), "BadArguments", "amount")
    rejects(chain, sign(chain, ALICE, "balances", "transfer", [BOB.public_key], 0), "BadArguments", "takes 2")


def test_insufficient_balance_for_fee(chain):
    from runtime.crypto import Keypair
    pauper = Keypair.from_dev_name("nobody")
    xt = sign(chain, pauper, "balances", "transfer", [BOB.public_key, 1], 0)
    rejects(chain, xt, "Payment")


def test_oversize_extrinsic(chain):
    xt = sign(chain, ALICE, "system", "remark", [b"x" * (MAX_EXTRINSIC_SIZE + 1)], 0)
    rejects(chain, xt, "ExhaustsResources")


def test_non_canonical_encoding_rejected(chain):
    xt = transfer(chain)
    # re-encode the nonce 0 as a 2-byte uint: same value, different bytes
    idx = xt.index(bytes([0x93, 0x00]))
    bad = xt[:idx] + bytes([0x93, 0xcd, 0x00, 0x00]) + xt[idx + 2:]
    rejects(chain, bad, "BadFormat")


def test_failed_call_pays_fee_and_rolls_back(chain):
    too_much = 2**64 - 1
    block, events, _ = chain.build_block(ALICE, 1, 1000, [transfer(chain, 0, amount=too_much)])
    assert block.extrinsics, "a failing call is still included"
    failed = [e for e in events if e.name == "ExtrinsicFailed"]
    assert failed and failed[0].data[1] == "InsufficientBalance"
    fee = failed[0].data[3]
    state = chain.state()
    alice_free = balances.Account.get(state, ALICE.public_key)[0]
    assert alice_free == 10**15 - fee
    assert balances.Account.get(state, BOB.public_key)[0] == 10**15
    assert system.AccountNonce.get(state, ALICE.public_key) == 1
    assert not [e for e in events if e.name == "Transfer"]


def test_genesis_state_matches_header_root(chain):
    assert chain.store.state_root == chain.spec.genesis_block.header.state_root


def test_extrinsic_encoding_is_documented_list(chain):
    from runtime.codec import decode
    xt = decode(transfer(chain))
    assert xt[0] == ALICE.public_key and len(xt[1]) == 64 and xt[2] == [0, [0, 0], 0]
    assert xt[3] == ["balances", "transfer", [BOB.public_key, 10]]
    assert encode(xt) == transfer(chain)
