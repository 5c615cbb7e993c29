"""Typed runtime metadata (`state_getMetadata`): enough for a generic client to build and decode everything.

For every module: calls with typed arguments and weights, events with typed fields, errors,
storage items with key and value types and their raw key layout, constants (current values of
the module's parameters); plus the extrinsic format, the fee parameters and the type registry.

Types are JSON descriptors: a name from `TYPES` ("u64", "AccountId", "Cid", …), or
`{"list": T, "min": n, "max": n}`, `{"struct": [[name, T], ...]}` (a msgpack array in that
order), `{"tuple": [T, ...]}`, `{"option": T}` (nil or T), `{"enum": [values]}`.
docs/rpc.md ("Metadata") explains them; tests/test_substrate_rpc.py checks every call argument,
event field and storage item has one.
"""
from __future__ import annotations

from typing import Any

from runtime.codec import decode, encode
from runtime.modules import staking
from runtime.state import Overlay

METADATA_VERSION = 1

# --------------------------------------------------------------- the type registry

TYPES: dict[str, dict] = {
    "u8": {"encoding": "msgpack integer", "min": 0, "max": 2**8 - 1},
    "u32": {"encoding": "msgpack integer", "min": 0, "max": 2**32 - 1},
    "u64": {"encoding": "msgpack integer", "min": 0, "max": 2**64 - 1},
    "i64": {"encoding": "msgpack integer (signed)", "min": -(2**63), "max": 2**63 - 1},
    "Balance": {"encoding": "msgpack integer (base units; 10**tokenDecimals per token)", "min": 0, "max": 2**64 - 1},
    "Ppb": {"encoding": "msgpack integer, parts per billion (10**9 = 100 %)", "min": 0, "max": 2**64 - 1},
    "bool": {"encoding": "msgpack bool"},
    "AccountId": {"encoding": "msgpack bin, 32 bytes (ed25519 public key); shown as SS58 prefix 42", "length": 32},
    "Hash": {"encoding": "msgpack bin, 32 bytes (blake2b-256); RPC shows 0x-hex, payloads carry the raw bytes",
             "length": 32},
    "Signature": {"encoding": "msgpack bin, 64 bytes (ed25519)", "length": 64},
    "Bytes": {"encoding": "msgpack bin"},
    "Text": {"encoding": "msgpack str (UTF-8)"},
    "Cid": {"encoding": "msgpack str: CIDv0 'Qm…' (base58) or CIDv1 base32 'b…'"},
    "Role": {"encoding": "msgpack str", "enum": list(staking.ROLES)},
    "Any": {"encoding": "any msgpack value"},
}


def _list(item: Any, lo: int = 0, hi: int | None = None) -> dict:
    out: dict[str, Any] = {"list": item, "min": lo}
    if hi is not None:
        out["max"] = hi
    return out


def _struct(*fields: tuple[str, Any]) -> dict:
    return {"struct": [[name, t] for name, t in fields]}


def _bytes(lo: int, hi: int) -> dict:
    return {"bytes": {"min": lo, "max": hi}}


ACCOUNT_STAKE = _struct(("account", "AccountId"), ("stake", "Balance"))

# call argument types by the runtime's ArgCheck description (runtime/module.py and the modules)
_ARG_TYPES: dict[str, Any] = {
    "AccountId (32 bytes)": "AccountId",
    "Hash (32 bytes)": "Hash",
    "Balance (u64)": "Balance",
    "u32": "u32",
    "u64": "u64",
    "text (≤ 256 bytes)": {"text": {"maxBytes": 256}},
    "bytes (≤ 16 KiB)": _bytes(0, 16384),
    "salt (≤ 64 bytes)": _bytes(0, 64),
    "key (1..64 bytes)": _bytes(1, 64),
    "role: one of authority, validator, trainer, host": "Role",
    "CID (CIDv0 'Qm…' base58, or CIDv1 base32 'b…')": "Cid",
    "capabilities [available 0|1, device kind (1..32 bytes of text), memory MiB (u32)]":
        _struct(("available", {"enum": [0, 1]}), ("device_kind", {"text": {"minBytes": 1, "maxBytes": 32}}),
                ("memory_mib", "u32")),
    "scores [[trainer account (32 bytes), score (0..1000000000)], ...] (≤ 256 entries)":
        _list(_struct(("trainer", "AccountId"), ("score", {"int": {"min": 0, "max": 10**9}})), 0, 256),
    "vouchers [[user (32 bytes), host (32 bytes), model_cid, cumulative_queries, cumulative_amount, nonce, "
    "signature (64 bytes)], ...] (1..256)":
        _list(_struct(("user", "AccountId"), ("host", "AccountId"), ("model_cid", "Cid"),
                      ("cumulative_queries", "u64"), ("cumulative_amount", "Balance"), ("nonce", "u64"),
                      ("signature", "Signature")), 1, 256),
    "params [kind (a-z0-9_), n_trainers, n_validators, min_stake, training_blocks, commit_blocks, reveal_blocks] "
    "(integers ≥ 0)":
        _struct(("kind", "Text"), ("n_trainers", "u32"), ("n_validators", "u32"), ("min_stake", "Balance"),
                ("training_blocks", "u32"), ("commit_blocks", "u32"), ("reveal_blocks", "u32")),
}

# event field types by field name (the same name means the same type in every module)
_FIELD_TYPES: dict[str, Any] = {
    **dict.fromkeys(("who", "from", "to", "creator", "trainer", "validator", "host", "user", "offender",
                     "delegator", "target", "top_trainer"), "AccountId"),
    **dict.fromkeys(("amount", "fee", "reward", "reward_pool", "total", "balance", "price_per_query", "paid",
                     "shortfall", "revenue"), "Balance"),
    **dict.fromkeys(("task_id", "block", "release_block", "window_end", "epoch", "set_id", "round", "period",
                     "weight", "queries", "vouchers", "timestamp_ms"), "u64"),
    **dict.fromkeys(("spec_cid", "model_cid", "top_model", "share_cid"), "Cid"),
    **dict.fromkeys(("kind", "status", "reason", "module", "error", "message", "device_kind", "party", "endpoint"),
                    "Text"),
    "role": "Role", "as": "Text", "hash": "Hash", "commitment": "Hash", "key": "Bytes", "available": "u8",
    "memory_mib": "u32", "trainers": _list(ACCOUNT_STAKE), "validators": _list(ACCOUNT_STAKE),
    "authorities": _list(ACCOUNT_STAKE),
}

# storage items: "module:Name" -> (key type or None for a plain value, value type, doc)
_STORAGE: dict[str, tuple[Any, Any, str]] = {
    "system:Number": (None, "u64", "number of the block being built or last built"),
    "system:ParentHash": (None, "Hash", "hash of the parent block"),
    "system:Timestamp": (None, "u64", "block timestamp, ms since the epoch"),
    "system:BlockHash": ("u64", {"option": "Hash"}, "recent block hashes by number (era birth blocks)"),
    "system:AccountNonce": ("AccountId", "u64", "next nonce of an account"),
    "system:Randomness": (None, "Hash", "the randomness beacon's current value"),
    "system:FeeParams": (None, _struct(("base_fee", "Balance"), ("byte_fee", "Balance"), ("weight_fee", "Balance"),
                                       ("max_block_weight", "u64")), "fee = base + byte_fee·length + weight_fee·weight"),
    "system:EpochLength": (None, "u64", "blocks per epoch"),
    "balances:Account": ("AccountId", _struct(("free", "Balance"), ("reserved", "Balance")), "balances of an account"),
    "balances:TotalIssuance": (None, "Balance", "all units in existence"),
    "session:Authorities": (None, _list(ACCOUNT_STAKE), "the active authority set, sorted by account"),
    "session:SetId": (None, "u64", "id of the active authority set"),
    "session:PreviousAuthorities": (None, _list(ACCOUNT_STAKE), "the set before the current one"),
    "session:EpochRandomness": (None, "Hash", "randomness of the current epoch"),
    "session:Params": (None, _struct(("max_authorities", "u32"), ("slash_ppb", "Ppb")), "session parameters"),
    "session:Offences": (_list("Any"), {"option": "u64"},
                         "[kind, offender, slot] or [kind, offender, set_id, round] -> block reported"),
    "history:Record": (_struct(("account", "AccountId"), ("role", "Role")),
                       _struct(("tasks_joined", "u64"), ("completed", "u64"), ("missed_deadlines", "u64"),
                               ("ranked", "u64"), ("rank_sum", "u64"), ("best_rank", "u64"),
                               ("consensus_score_sum", "u64"), ("agreement_sum_ppb", "Ppb"), ("rewards", "Balance"),
                               ("slashed", "Balance"), ("slash_count", "u64")), "an account's record in a role"),
    "history:Recent": (_struct(("account", "AccountId"), ("role", "Role")),
                       _list(_struct(("task_id", "u64"), ("rank", "u64"), ("consensus_score", "u64"),
                                     ("agreement_ppb", "Ppb"), ("reward", "Balance"))), "recent tasks, newest last"),
    "staking:MinStake": ("Role", "Balance", "minimum bond of a role"),
    "staking:Params": (None, _struct(("unbonding_period_blocks", "u64"), ("slash_treasury_ppb", "Ppb"),
                                     ("min_delegation", "Balance")), "staking parameters"),
    "staking:Bonded": (_struct(("account", "AccountId"), ("role", "Role")), "Balance", "own bond in a role"),
    "staking:Members": ("Role", _list("AccountId"), "accounts bonded for a role, sorted"),
    "staking:Delegators": ("AccountId", _list(_struct(("delegator", "AccountId"), ("amount", "Balance"))),
                           "who delegates to a target"),
    "staking:Delegations": ("AccountId", _list(_struct(("target", "AccountId"), ("amount", "Balance"))),
                            "a delegator's delegations"),
    "staking:Unlocking": ("AccountId", _list(_struct(("release_block", "u64"), ("amount", "Balance"))),
                          "unbonded amounts waiting for release"),
    "staking:Heartbeat": ("AccountId", {"option": _struct(("epoch", "u64"), ("block", "u64"), ("available", "u8"),
                                                          ("device_kind", "Text"), ("memory_mib", "u32"))},
                          "the latest heartbeat"),
    "staking:Locks": (_struct(("account", "AccountId"), ("role", "Role")),
                      _list(_struct(("task_id", "u64"), ("amount", "Balance"))), "bond committed to open tasks"),
    "staking:LockHorizon": ("AccountId", "u64", "last block by which every task that locked the account's bonds has closed"),
    "staking:Exposed": ("AccountId", _list(_struct(("delegator", "AccountId"), ("amount", "Balance"),
                                                    ("until_block", "u64"))),
                        "stake undelegated from this account while it sat in open tasks, slashable until then"),
    "rewards:Params": (None, _struct(("emission_per_epoch", "Balance"), ("beta_ppb", "Ppb"), ("gamma_ppb", "Ppb"),
                                     ("rho_ppb", "Ppb"), ("epsilon_ppb", "Ppb"), ("sigma_ppb", "Ppb"),
                                     ("kappa_ppb", "Ppb"), ("alpha_ppb", "Ppb"), ("slash_no_commit_ppb", "Ppb"),
                                     ("slash_no_reveal_ppb", "Ppb"), ("max_validator_share_ppb", "Ppb")),
                       "reward parameters (docs/incentives.md)"),
    "tasks:Limits": (None, _struct(("max_trainers", "u32"), ("max_validators", "u32"), ("max_window_blocks", "u64"),
                                   ("min_reward_pool", "Balance"), ("max_active_tasks", "u32"),
                                   ("max_tasks_per_creator", "u32"), ("max_min_stake", "Balance"),
                                   ("min_validators_for_emission", "u32"), ("model_reveal_blocks", "u32")),
                     "task limits"),
    "tasks:Kinds": (None, _list("Text"), "allowed task kinds ([] = any)"),
    "tasks:NextTaskId": (None, "u64", "id the next task gets"),
    "tasks:Task": ("u64", {"option": _struct(
        ("id", "u64"), ("creator", "AccountId"), ("spec_cid", "Cid"), ("kind", "Text"), ("n_trainers", "u32"),
        ("n_validators", "u32"), ("min_stake", "Balance"), ("training_blocks", "u32"), ("commit_blocks", "u32"),
        ("reveal_blocks", "u32"), ("pool", "Balance"), ("emission", "Balance"), ("status", "Text"),
        ("phase_end", "u64"), ("trainers", _list(ACCOUNT_STAKE)), ("validators", _list(ACCOUNT_STAKE)),
        ("timeline", _list(_struct(("status", "Text"), ("block", "u64"), ("timestamp_ms", "u64")))),
        ("validation_share", "Text"), ("audit_key", "Bytes"), ("top_model", "Text"))}, "a task by id"),
    "tasks:Active": (None, _list("u64"), "ids of open tasks, ascending"),
    "tasks:Work": (_struct(("task_id", "u64"), ("trainer", "AccountId")),
                   {"option": _struct(("started_block", "u64"), ("started_ms", "u64"), ("submitted_block", "u64"),
                                      ("submitted_ms", "u64"), ("model_cid", "Text"),
                                      ("commitment", {"option": "Hash"}), ("committed_block", "u64"))},
                   "a trainer's work on a task"),
    "tasks:Submissions": ("u64", _list("AccountId"), "trainers in submission order"),
    "tasks:Votes": (_struct(("task_id", "u64"), ("validator", "AccountId")),
                    {"option": _struct(("started_block", "u64"), ("started_ms", "u64"),
                                       ("commitment", {"option": "Hash"}), ("commit_block", "u64"),
                                       ("reveal_block", "u64"))}, "a validator's vote on a task"),
    "tasks:Reveals": ("u64", _list(_struct(("validator", "AccountId"),
                                           ("scores", _list(_struct(("trainer", "AccountId"), ("score", "u64")))))),
                      "revealed scores in reveal order"),
    "tasks:Leaderboard": ("u64", _list(_struct(("trainer", "AccountId"), ("rank", "u32"), ("consensus", "u64"),
                                               ("reward", "Balance"), ("model_cid", "Cid"))), "ranks in rank order"),
    "tasks:ValidatorResults": ("u64", _list(_struct(("validator", "AccountId"), ("agreement_ppb", "Ppb"),
                                                    ("reward", "Balance"))), "validators' agreement and rewards"),
    "tasks:ModelOwner": ("Cid", {"option": _struct(("trainer", "AccountId"), ("task_id", "u64"), ("block", "u64"))},
                         "first trainer to submit a model CID"),
    "tasks:SeatCredit": (_struct(("role", "Role"), ("account", "AccountId")), {"option": "i64"},
                         "selection credit, 10**9 = one seat (none: never a candidate yet)"),
    "marketplace:Params": (None, _struct(("period_blocks", "u64"), ("withdraw_delay", "u64"),
                                         ("max_vouchers_per_report", "u32"), ("usage_emission_per_period", "Balance")),
                           "marketplace parameters"),
    "marketplace:Shares": (None, _list(_struct(("party", "Text"), ("ppb", "Ppb"))), "usage revenue shares"),
    "marketplace:ChainGenesis": (None, {"option": "Hash"}, "genesis hash vouchers are bound to"),
    "marketplace:ModelInfo": ("Cid", {"option": _struct(("task_id", "u64"), ("trainer", "AccountId"), (
        "validators", _list(_struct(("validator", "AccountId"), ("stake", "Balance"), ("agreement_ppb", "Ppb")))))},
        "a top model's task, trainer and validators"),
    "marketplace:Host": (_struct(("model_cid", "Cid"), ("host", "AccountId")),
                         {"option": _struct(("endpoint", "Text"), ("price", "Balance"), ("block", "u64"))},
                         "a host's registration for a model"),
    "marketplace:HostsOf": ("Cid", _list("AccountId"), "hosts of a model, sorted"),
    "marketplace:ModelsOf": ("AccountId", _list("Cid"), "models a host serves, sorted"),
    "marketplace:Escrow": ("AccountId", _struct(("balance", "Balance"), ("withdraw_requested", "Balance"),
                                                ("release_block", "u64")), "a user's escrow"),
    "marketplace:Redeemed": (_struct(("user", "AccountId"), ("host", "AccountId"), ("model_cid", "Cid")),
                             _struct(("cumulative_queries", "u64"), ("cumulative_amount", "Balance"), ("nonce", "u64")),
                             "the last redeemed voucher of a channel"),
    "marketplace:Usage": (_struct(("model_cid", "Cid"), ("period", "u64")),
                          _list(_struct(("host", "AccountId"), ("queries", "u64"), ("revenue", "Balance"))),
                          "usage per host in a period"),
    "marketplace:Payouts": (_struct(("model_cid", "Cid"), ("period", "u64")),
                            _list(_struct(("party", "Text"), ("who", "AccountId"), ("amount", "Balance"))),
                            "payouts of a period"),
    "marketplace:PeriodUsage": ("u64", _list(_struct(("model_cid", "Cid"), ("host", "AccountId"), ("revenue", "Balance"))),
                                "all usage of a period"),
    "marketplace:Served": (_struct(("model_cid", "Cid"), ("host", "AccountId")), {"option": "u64"},
                           "block a host first registered for a model"),
    "marketplace:Channel": (_struct(("user", "AccountId"), ("host", "AccountId")),
                            _struct(("balance", "Balance"), ("withdraw_requested", "Balance"), ("release_block", "u64")),
                            "escrow only that host can be paid from"),
}

EXTRINSIC_FORMAT = {
    "encoding": "msgpack array [signer: AccountId, signature: Signature, extra, call]",
    "extra": "[nonce: u64, era: [birth: u64, period: u64], tip: Balance]; period 0 = immortal (birth 0)",
    "call": "[module: Text, function: Text, args: [arguments in declared order]]",
    "signingPayload": "msgpack [call, extra, genesis_hash: Hash (raw 32 bytes), spec_version: u32, "
                      "birth_hash: Hash (genesis hash when immortal)]; signed as is with ed25519, never pre-hashed",
    "hash": "blake2b-256 of the encoded extrinsic",
    "ss58Prefix": 42,
    "docs": "docs/extrinsic-format.md",
}


def arg_type(description: str) -> Any:
    """The type descriptor of a call argument, from its ArgCheck description; "Any" if unknown."""
    return _ARG_TYPES.get(description, "Any")


def field_type(name: str) -> Any:
    """The type descriptor of an event field by its name; "Any" if unknown."""
    return _FIELD_TYPES.get(name, "Any")


def _storage_key_of(item: Any) -> tuple[str, str, bytes]:
    if hasattr(item, "prefix"):
        return "map", item.prefix.decode(), item.prefix
    return "value", item.key.decode(), item.key


def _constants(module: str, state: Overlay) -> dict:
    """Current values of a module's parameter items, by field name."""
    out: dict[str, Any] = {}
    for full, (key_type, value_type, _) in _STORAGE.items():
        mod, name = full.split(":")
        if mod != module or key_type is not None or name not in ("Params", "Limits", "FeeParams", "EpochLength",
                                                                   "Shares"):
            continue
        raw = state.get(full.encode())
        if raw is None:
            continue
        value = decode(raw)
        if isinstance(value_type, dict) and "struct" in value_type and isinstance(value, list):
            out[name] = {f: v for (f, _), v in zip(value_type["struct"], value)}
        else:
            out[name] = value
    if module == "staking":
        out["MinStake"] = {role: staking.MinStake.get(state, role) for role in staking.ROLES}
    return out


def build_metadata(runtime: Any, state: Overlay, spec_version: int, properties: dict) -> dict:
    """The full typed metadata of `runtime` with constants read from `state`."""
    modules: dict[str, Any] = {}
    for name, module in runtime.modules.items():
        calls = {}
        for (mname, fname), info in sorted(runtime.calls.items()):
            if mname != name:
                continue
            calls[fname] = {"weight": info.weight, "doc": (info.function.__doc__ or "").strip(),
                            "args": [{"name": a, "type": arg_type(c.type_name), "description": c.type_name}
                                     for a, c in info.args]}
        events = {ename: {"fields": [{"name": f, "type": field_type(f)} for f in fields]}
                  for ename, fields in module.events.items()}
        errors = {e.__name__: {"doc": (e.__doc__ or "").strip()} for e in module.errors}
        storage = {}
        for item in module.storage:
            kind, text, raw = _storage_key_of(item)
            key_type, value_type, doc = _STORAGE.get(text.rstrip(":"), ("Any" if kind == "map" else None, "Any", ""))
            storage[text.rstrip(":").split(":", 1)[1]] = {
                "kind": kind, "key": key_type, "value": value_type, "doc": doc,
                "rawKey": "0x" + raw.hex() + (" + msgpack(key)" if kind == "map" else ""),
                "default": "0x" + getattr(item, "_default", encode(None)).hex()}  # a RecordMap's absent value is nil
        modules[name] = {"calls": calls, "events": events, "errors": errors, "storage": storage,
                         "constants": _constants(name, state)}
    base, per_byte, per_weight, max_weight = decode(state.get(b"system:FeeParams") or b"\x94\x00\x00\x00\x00")
    return {
        "metadataVersion": METADATA_VERSION, "specName": "arena", "specVersion": spec_version,
        "properties": properties, "types": TYPES, "extrinsic": EXTRINSIC_FORMAT,
        "fees": {"base": base, "perByte": per_byte, "perWeight": per_weight, "maxBlockWeight": max_weight,
                 "formula": "fee = base + perByte * len(encoded extrinsic) + perWeight * call weight; "
                            "the tip is paid on top; a failed call still pays"},
        "events": {"encoding": "each event is [phase, module, name, [fields in declared order]]; phase -1 = hook",
                   "rpc": "arena_events(at) returns them decoded with field names"},
        "modules": modules,
    }


def type_text(t: Any) -> str:
    """A type descriptor as one line of text, e.g. `list<[trainer: AccountId, score: int 0..10^9]> (≤ 256)`."""
    if isinstance(t, str):
        return t
    if "struct" in t:
        return "[" + ", ".join(f"{n}: {type_text(ft)}" for n, ft in t["struct"]) + "]"
    if "list" in t:
        bounds = f" ({t.get('min', 0)}..{t['max']})" if "max" in t else ""
        return f"list<{type_text(t['list'])}>{bounds}"
    if "option" in t:
        return f"{type_text(t['option'])} or nil"
    if "enum" in t:
        return " or ".join(str(v) for v in t["enum"])
    if "bytes" in t:
        return f"bin ({t['bytes']['min']}..{t['bytes']['max']} bytes)"
    if "text" in t:
        return f"str (≤ {t['text']['maxBytes']} bytes)"
    if "int" in t:
        return f"int {t['int']['min']}..{t['int']['max']}"
    return str(t)


def calls_markdown(metadata: dict) -> str:
    """The table of every call and its arguments in order with their encodings (docs/extrinsic-format.md)."""
    lines = ["| call | arguments, in order |", "|---|---|"]
    for mname, module in metadata["modules"].items():
        for fname, info in module["calls"].items():
            args = ", ".join(f"{a['name']}: {type_text(a['type'])}" for a in info["args"]) or "—"
            lines.append(f"| `{mname}.{fname}` | {args} |")
    return "\n".join(lines)
