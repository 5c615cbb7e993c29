"""Total issuance is conserved across any sequence of transfers and failed calls."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.crypto import Keypair
from runtime.modules import balances, treasury
from tests.helpers import make_chain, sign

KEYS = [Keypair.from_dev_name(n) for n in ("alice", "bob", "charlie", "dave")]
OTHERS = [Keypair.from_dev_name(n).public_key for n in ("eve", "ferdie")]
ACCOUNTS = [k.public_key for k in KEYS] + [treasury.TREASURY_ACCOUNT] + OTHERS

op = st.tuples(
    st.integers(0, 3),                                   # sender
    st.integers(0, 4),                                   # receiver (4 = treasury)
    st.one_of(st.integers(0, 10**12), st.integers(10**15, 2**64 - 1)),  # ok or failing amount
    st.integers(0, 1000),                                # tip
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(op, max_size=6), min_size=1, max_size=4))
def test_issuance_conserved(tmp_path_factory, blocks):
    chain = make_chain(tmp_path_factory.mktemp("db"))
    try:
        nonces = [0] * 4
        total = balances.TotalIssuance.get(chain.state())
        for slot, ops in enumerate(blocks, start=1):
            xts = []
            for sender, receiver, amount, tip in ops:
                xts.append(sign(chain, KEYS[sender], "balances", "transfer", [ACCOUNTS[receiver], amount],
                                nonces[sender], tip=tip))
                nonces[sender] += 1
            chain.build_block(KEYS[slot % 4], slot, slot * 1000, xts)
            state = chain.state()
            assert balances.TotalIssuance.get(state) == total
            held = sum(sum(balances.Account.get(state, a)) for a in ACCOUNTS)
            assert held == total
            for a in ACCOUNTS:
                free, reserved = balances.Account.get(state, a)
                assert free >= 0 and reserved >= 0
    finally:
        chain.store.close()
