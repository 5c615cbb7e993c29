"""Property: after any random sequence of staking and task calls, every unit is accounted for.

- total issuance = genesis issuance + minted − burned (from the Minted / Burned events);
- Σ (free + reserved) over every account that ever appeared (dev accounts, a fresh account, the
  treasury, the tasks pool) = total issuance, and no balance is negative;
- each account's reserved balance = its bonds + its delegations + its unlocking chunks;
- the tasks pool holds exactly the pools + emission of the tasks still open.
"""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.crypto import Keypair
from runtime.modules import balances, staking, tasks, treasury
from tests.runtime_harness import KEYS, UNIT, RuntimeHarness, commit_hash, dev_genesis, fake_cid, model_hash

ACTORS = [KEYS[n] for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie")] + [Keypair.from_dev_name("grace")]
ROLES = staking.ROLES
AMOUNTS = [5 * UNIT, 10 * UNIT, 20 * UNIT, 60 * UNIT]
N_OPS = 18  # 14..17: "the next sensible step" of the oldest open task, so life cycles complete


def fast_genesis():
    """The dev genesis with 4-block epochs, a 3-block unbonding period and emission for tasks of any size,
    so that emission and withdrawals happen."""
    config = dev_genesis()
    config["modules"]["system"]["epoch_length"] = 4
    config["modules"]["staking"]["unbonding_period"] = 3
    config["modules"]["tasks"]["min_validators_for_emission"] = 1  # small tasks here must still see emission
    config["modules"]["balances"]["accounts"].append([ACTORS[-1].address, 10**15])
    config["modules"]["staking"]["bonds"] += [
        [KEYS["bob"].address, "trainer", 20 * UNIT], [KEYS["charlie"].address, "trainer", 40 * UNIT],
        [KEYS["dave"].address, "validator", 30 * UNIT], [KEYS["eve"].address, "validator", 15 * UNIT],
        [KEYS["ferdie"].address, "validator", 25 * UNIT],
    ]
    return config


def make_call(h: RuntimeHarness, op: int, actor: int, size: int):
    key = ACTORS[actor]
    ctx = h.ctx()
    last = tasks.NextTaskId.get(ctx.state) - 1
    task_id = max(last, 0)
    role = ROLES[(actor + size) % len(ROLES)]
    amount = AMOUNTS[size]
    submitted = sorted(tasks.Submissions.get(ctx.state, task_id)) if last >= 0 else []
    scores = [[t, 100 + i * 7 + actor] for i, t in enumerate(submitted)]
    calls = {
        0: ("staking", "bond", [role, amount]),
        1: ("staking", "unbond", [role, amount]),
        2: ("staking", "delegate", [ACTORS[(actor + 1) % len(ACTORS)].public_key, amount]),
        3: ("staking", "undelegate", [ACTORS[(actor + 1) % len(ACTORS)].public_key, amount]),
        4: ("staking", "withdraw_unbonded", []),
        5: ("staking", "heartbeat", [[1, "cpu", 512]]),
        6: ("tasks", "create", [fake_cid("spec"), amount, ["char_lm", 1 + size % 3, 1 + actor % 3, 0, 2, 2, 2]]),
        7: ("tasks", "start_training", [task_id]),
        8: model_step(ctx, task_id, key),
        9: ("tasks", "start_validation", [task_id]),
        10: ("tasks", "commit_scores", [task_id, commit_hash(task_id, key.public_key, scores, b"s")]),
        11: ("tasks", "reveal_scores", [task_id, scores, b"s"]),
        12: ("tasks", "finalize", [task_id]),
        13: ("balances", "transfer", [ACTORS[-1].public_key, amount]),
    }
    if op >= 14:
        return next_step(h, actor, size)
    module, function, args = calls[op]
    return key, module, function, args


def model_cid(who: bytes) -> str:
    return fake_cid(f"m{who.hex()}")


def model_step(ctx, task_id: int, key) -> tuple[str, str, list]:
    """commit_model while the task trains, else submit_model (the reveal), for the trainer's own model."""
    task = tasks.TaskById.get(ctx.state, task_id)
    if task is not None and tasks.Task.from_list(task).status == "training":
        return "tasks", "commit_model", [task_id, model_hash(task_id, key.public_key, model_cid(key.public_key))]
    return "tasks", "submit_model", [task_id, model_cid(key.public_key)]


def next_step(h: RuntimeHarness, actor: int, size: int):
    """The phase-appropriate call of a selected participant of the oldest open task (or a new task)."""
    ctx = h.ctx()
    active = tasks.Active.get(ctx.state)
    if not active:
        return ACTORS[0], "tasks", "create", [fake_cid("spec"), AMOUNTS[size], ["char_lm", 2, 2, 0, 5, 4, 4]]
    t = tasks.get_task(ctx, active[0])
    people = t.validators if t.status in ("validation", "reveal") else t.trainers
    if not people:
        return ACTORS[actor], "staking", "heartbeat", [[1, "cpu", 512]]
    who = people[actor % len(people)][0]
    key = next(k for k in ACTORS if k.public_key == who)
    if t.status == "training":
        work = tasks.Work.get(ctx.state, [t.id, who])
        if work is None:
            return key, "tasks", "start_training", [t.id]
        return key, "tasks", "commit_model", [t.id, model_hash(t.id, who, model_cid(who))]
    if t.status == "model_reveal":
        return key, "tasks", "submit_model", [t.id, model_cid(who)]
    scores = [[tr, 50 + 13 * i + size] for i, tr in enumerate(sorted(tasks.Submissions.get(ctx.state, t.id)))]
    if t.status == "validation":
        if tasks.Votes.get(ctx.state, [t.id, who]) is None:
            return key, "tasks", "start_validation", [t.id]
        return key, "tasks", "commit_scores", [t.id, commit_hash(t.id, who, scores, b"s")]
    return key, "tasks", "reveal_scores", [t.id, scores, b"s"]


def check_invariants(h: RuntimeHarness, expected_issuance: int) -> None:
    ctx = h.ctx()
    state = ctx.state
    issuance = balances.TotalIssuance.get(state)
    assert issuance == expected_issuance
    holders = [k.public_key for k in ACTORS] + [treasury.TREASURY_ACCOUNT, tasks.POOL_ACCOUNT]
    held = 0
    for who in holders:
        free, reserved = balances.Account.get(state, who)
        assert free >= 0 and reserved >= 0
        held += free + reserved
    assert held == issuance
    for key in ACTORS:
        who = key.public_key
        locked = sum(staking.bonded(ctx, who, role) for role in ROLES)
        locked += sum(a for _, a in staking.Delegations.get(state, who))
        locked += sum(a for _, a in staking.Unlocking.get(state, who))
        assert balances.reserved_balance(ctx, who) == locked
    open_funds = 0
    for task_id in tasks.Active.get(state):
        t = tasks.get_task(ctx, task_id)
        open_funds += t.pool + t.emission
    assert balances.free_balance(ctx, tasks.POOL_ACCOUNT) == open_funds
    assert balances.reserved_balance(ctx, tasks.POOL_ACCOUNT) == 0


step = st.tuples(st.integers(0, N_OPS - 1), st.integers(0, len(ACTORS) - 1), st.integers(0, len(AMOUNTS) - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(st.lists(step, max_size=5), min_size=4, max_size=30))
def test_every_unit_accounted_for(blocks):
    h = RuntimeHarness(fast_genesis())
    expected = balances.TotalIssuance.get(h.ctx().state)
    check_invariants(h, expected)
    for ops in blocks:
        calls = [make_call(h, *op) for op in ops]
        if (h.number + 1) % 4 == 1:  # workers renew their heartbeats every epoch
            calls += [(k, "staking", "heartbeat", [[1, "cpu", 512]]) for k in ACTORS[1:6]]
        events = h.block(*calls)
        for event in events:
            if event.module == "balances" and event.name == "Minted":
                expected += event.data[1]
            elif event.module == "balances" and event.name == "Burned":
                expected -= event.data[0]
        check_invariants(h, expected)


def test_scripted_sequence_mints_slashes_and_pays():
    """A deterministic run that surely exercises emission, a slash (burn) and a payout."""
    h = RuntimeHarness(fast_genesis())
    bob, dave, eve = ACTORS[1], ACTORS[3], ACTORS[4]
    expected = balances.TotalIssuance.get(h.ctx().state)
    h.block((bob, "staking", "bond", ["trainer", 20 * UNIT]), (bob, "staking", "heartbeat", [[1, "cpu", 1]]),
            (dave, "staking", "bond", ["validator", 20 * UNIT]), (dave, "staking", "heartbeat", [[1, "cpu", 1]]),
            (eve, "staking", "bond", ["validator", 20 * UNIT]), (eve, "staking", "heartbeat", [[1, "cpu", 1]]))
    h.block((ACTORS[0], "tasks", "create", [fake_cid("s"), 50 * UNIT, ["char_lm", 1, 2, 0, 3, 3, 3]]))
    names = []
    for calls in [
        [], [(bob, "tasks", "start_training", [0])],
        [(bob, "tasks", "commit_model", [0, model_hash(0, bob.public_key, fake_cid("m"))])],
        [(bob, "tasks", "submit_model", [0, fake_cid("m")])], [],
        [(dave, "tasks", "start_validation", [0]),
         (dave, "tasks", "commit_scores", [0, commit_hash(0, dave.public_key, [[bob.public_key, 9]], b"")])],
        [], [], [], [(dave, "tasks", "reveal_scores", [0, [[bob.public_key, 9]], b""])], [], [], [],
    ]:
        events = h.block(*calls)
        for event in events:
            names.append(f"{event.module}.{event.name}")
            if event.module == "balances" and event.name == "Minted":
                expected += event.data[1]
            elif event.module == "balances" and event.name == "Burned":
                expected -= event.data[0]
        check_invariants(h, expected)
    assert tasks.get_task(h.ctx(), 0).status == "finalized"
    for name in ("rewards.EpochEmission", "balances.Burned", "staking.Slashed", "rewards.RewardPaid"):
        assert name in names
