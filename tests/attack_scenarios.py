"""Attacks of issue 12 played with signed calls on the in-process runtime (tests/runtime_harness.py).

Shared by the tests (tests/test_attacks*.py assert on the outcome) and by `bench/attacks.py`
(which prints it), so the bench's figures come from the same runtime run the tests check.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.crypto import Keypair
from runtime.modules import marketplace, tasks
from tests.runtime_harness import (
    KEYS,
    UNIT,
    RuntimeHarness,
    commit_hash,
    dev_genesis,
    failures,
    fake_cid,
    model_hash,
    named,
)
from tests.test_marketplace import (
    BOB,
    DAVE,
    EVE,
    FERDIE,
    GRACE,
    HEIDI,
    PERIOD,
    PRICE,
    finish_task,
    market_genesis,
    ok,
    period,
    voucher,
)

IVAN = Keypair.from_dev_name("ivan")            # the wash trader's paying (user) account
COPIER = Keypair.from_dev_name("mallory-t")     # a trainer that copies models
HEARTBEAT = [1, "cpu", 8192]

# ---------------------------------------------------------------- 9. wash trading by a bonded host

# finish_task makes bob the top model's trainer and dave and eve its task's only validators; the wash
# trader holds all three (the worst case: it gets back every share but the treasury's), hosts the
# model as heidi and pays itself from ivan. Ferdie is an honest host of the same model, paid by grace.
WASH_TRADER = (BOB, DAVE, EVE, HEIDI, IVAN)


@dataclass(frozen=True)
class WashTrade:
    """One usage period with an honest host, with and without a wash trade beside it."""

    paid: int                      # what the trader paid its own host (ivan → heidi)
    gain: int                      # the trader's net change from trading, transaction fees excluded
    honest_revenue: int            # what grace paid ferdie
    honest_emission: int           # usage emission of ferdie's entry with the trade beside it
    honest_emission_alone: int     # ... and without it
    minted: int                    # usage emission minted for the period with the trade

    @property
    def gain_per_unit_paid(self) -> float:
        return self.gain / self.paid


def _period_with_usage(wash: int, trade: bool, honest_queries: int, emission: int) -> tuple[int, int, int]:
    """(trader's assets after the period is paid + the wash report's fee, ferdie's entry emission, minted)."""
    config = market_genesis(usage_emission_per_period=emission)
    config["modules"]["balances"]["accounts"].append([IVAN.address, 10**15])
    h = RuntimeHarness(config)
    cid = finish_task(h)
    ok(h.block((FERDIE, "staking", "bond", ["host", 10 * UNIT]), (HEIDI, "staking", "bond", ["host", 10 * UNIT]),
               (GRACE, "marketplace", "deposit", [honest_queries * PRICE]), (IVAN, "marketplace", "deposit", [wash])))
    ok(h.block((FERDIE, "marketplace", "register_host", [cid, "http://127.0.0.1:8100", PRICE]),
               (HEIDI, "marketplace", "register_host", [cid, "http://127.0.0.1:8101", PRICE])))
    h.until((period(h) + 1) * PERIOD - 1)  # the reports open a period
    p = period(h)
    calls = [(FERDIE, "marketplace", "report_usage", [cid, p, [voucher(h, honest_queries, model=cid)]])]
    events = ok(h.block(*calls, *([(HEIDI, "marketplace", "report_usage",
                                    [cid, p, [voucher(h, 1, user=IVAN, host=HEIDI, model=cid, amount=wash)]])]
                                  if trade else [])))
    fees = named(events, "system", "ExtrinsicSuccess")
    wash_fee = fees[1].data[1] if trade else 0
    events = h.until((p + 2) * PERIOD)
    honest = sum(e.data[3] for e in named(events, "marketplace", "UsageEmission") if e.data[2] == FERDIE.public_key)
    minted = sum(e.data[3] for e in named(events, "marketplace", "UsageEmission"))
    ctx = h.ctx()
    assets = sum(h.free(k.public_key) + h.reserved(k.public_key) for k in WASH_TRADER)
    assets += marketplace.escrow_of(ctx, IVAN.public_key)[0]
    return assets + wash_fee, honest, minted


def wash_trade(wash: int = 10**8, honest_queries: int = 100, emission: int = UNIT) -> WashTrade:
    """The trader pays `wash` to itself in a period where ferdie serves `honest_queries` at PRICE.

    Both worlds are the same blocks and calls except the trader's one report, so the difference
    in the trader's assets (its five accounts' balances and ivan's escrow; the report's fee added
    back) is what the trade earned it, usage emission included.
    """
    alone, honest_alone, _ = _period_with_usage(wash, False, honest_queries, emission)
    traded, honest, minted = _period_with_usage(wash, True, honest_queries, emission)
    return WashTrade(wash, traded - alone, honest_queries * PRICE, honest, honest_alone, minted)


# ---------------------------------------------------------------- 4. copied and byte-tweaked models


@dataclass(frozen=True)
class CopyAttack:
    """A copier beside an honest trainer under the model commit–reveal rules."""

    refused: dict[str, str]        # attempt → the error that refused it ("" = accepted)
    original_pay: int              # the honest trainer's reward
    copier_pay: int                # the copier's reward (0 if it has no model on the board)


def copy_attack() -> CopyAttack:
    """Bob trains a model; the copier (10× bob's stake, so it would be paid 10× for the same rank and
    score) tries every copy it can: commit to bob's commitment bytes (all that is on chain before the
    commit deadline), reveal bob's CID once it is public, reveal a byte-tweaked CID, commit anew to
    the public CID. Dave validates; the task is finalized and each trainer's reward read off the board.
    """
    config = dev_genesis()
    config["modules"]["tasks"]["model_reveal_blocks"] = 10
    config["modules"]["balances"]["accounts"].append([COPIER.address, 10**15])
    h = RuntimeHarness(config)
    alice = KEYS["alice"]
    ok(h.block(*[call for key, role, stake in ((BOB, "trainer", 20), (COPIER, "trainer", 200), (DAVE, "validator", 30),
                                               (EVE, "validator", 30), (FERDIE, "validator", 30))
                 for call in ((key, "staking", "bond", [role, stake * UNIT]), (key, "staking", "heartbeat", [HEARTBEAT]))]))
    ok(h.block((alice, "tasks", "create", [fake_cid("copy-spec"), 100 * UNIT, ["char_lm", 2, 3, 0, 8, 8, 8]])))
    h.block()
    task_id = tasks.NextTaskId.get(h.ctx().state) - 1
    ok(h.block(*[(k, "tasks", "start_training", [task_id]) for k in (BOB, COPIER)]))
    original, tweaked = fake_cid("bob-original"), fake_cid("bob-original, one byte changed")
    ok(h.block((BOB, "tasks", "commit_model", [task_id, model_hash(task_id, BOB.public_key, original)])))
    work = tasks.Work.get(h.ctx().state, [task_id, BOB.public_key])
    assert work is not None
    seen = work.commitment
    refused: dict[str, str] = {}

    def attempt(label: str, function: str, arg: object) -> None:
        events = h.block((COPIER, "tasks", function, [task_id, arg]))
        refused[label] = "".join(f.error for f in failures(events))

    attempt("commit to the original's commitment bytes (the reveals below use it)", "commit_model", seen)
    h.until(tasks.get_task(h.ctx(), task_id).phase_end)
    attempt("reveal the original's CID", "submit_model", original)
    ok(h.block((BOB, "tasks", "submit_model", [task_id, original])))
    attempt("reveal a byte-tweaked CID", "submit_model", tweaked)
    attempt("commit anew to the public CID", "commit_model", model_hash(task_id, COPIER.public_key, original))
    h.until(tasks.get_task(h.ctx(), task_id).phase_end)
    validators = (DAVE, EVE, FERDIE)
    submitted = tasks.Submissions.get(h.ctx().state, task_id)
    scores = {k: sorted([[t, 900] for t in submitted]) for k in validators}
    ok(h.block(*[(k, "tasks", "start_validation", [task_id]) for k in validators]))
    ok(h.block(*[(k, "tasks", "commit_scores", [task_id, commit_hash(task_id, k.public_key, s, b"s")])
                 for k, s in scores.items()]))
    h.block()
    ok(h.block(*[(k, "tasks", "reveal_scores", [task_id, s, b"s"]) for k, s in scores.items()]))
    h.block()
    assert tasks.get_task(h.ctx(), task_id).status == "finalized"
    pay = {trainer: reward for trainer, _, _, reward, _ in tasks.Leaderboard.get(h.ctx().state, task_id)}
    return CopyAttack(refused, pay.get(BOB.public_key, 0), pay.get(COPIER.public_key, 0))

