"""What every `arena` command group shares: amounts in ARENA, accounts, inclusion reports, logging.

One unit convention: every amount flag takes ARENA with decimals ('1.5') or base units with a 'u'
suffix ('1500000000u'), and amounts are shown in ARENA. Keys and accounts are read by
node.keystore's `resolve_key` / `resolve_account` (dev name, //NAME, key file, keystore name, and
for accounts also SS58 or 0x): the one key parser, for every command and the workers alike.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys

from node.jsonfmt import fmt_amount
from node.keystore import resolve_account
from node.rpc_client import call_failed
from runtime.crypto import ss58_encode
from runtime.modules.balances import UNIT  # 9 decimals: balances are u64 on the wire

__all__ = ["address_of", "comma_list", "finite_float", "fmt_amount", "parse_amount", "positive_seconds",
           "print_inclusion", "quiet_http_loggers", "setup_logging", "with_arena"]

AMOUNT_EXAMPLE = "an amount in ARENA like 1.5 (1 ARENA = 10^9 units) or base units like 1500000000u"


def parse_amount(text: str) -> int:
    """An amount in ARENA ('1.5') or in base units with a 'u' suffix ('1500000000u'); the one unit convention."""
    raw = text.strip().replace("_", "")
    if raw.endswith("u"):
        if not raw[:-1].isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is not {AMOUNT_EXAMPLE}")
        return int(raw[:-1])
    whole, _, frac = raw.partition(".")
    if not (whole or frac) or not (whole or "0").isdigit() or not (frac or "0").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not {AMOUNT_EXAMPLE}")
    if len(frac) > 9:
        raise argparse.ArgumentTypeError(f"{text!r} has more than 9 decimal places (1 ARENA = 10^9 units)")
    units = int(whole or "0") * UNIT + int((frac + "0" * 9)[:9])
    if units >= 2**64:
        raise argparse.ArgumentTypeError(f"{text!r} is more than the chain holds (amounts are u64 base units)")
    return units


def with_arena(message: str) -> str:
    """A chain message with every amount-sized integer (≥ 10^6 base units) also shown in ARENA: '5000000000 (5 ARENA)'.

    The runtime reports amounts in base units; block numbers, nonces and counts stay below 10^6 in
    any message a user meets, so they are left alone.
    """
    def annotate(match: re.Match) -> str:
        units = int(match.group(0))
        return f"{units} ({fmt_amount(units)})" if units >= 10**6 else match.group(0)

    return re.sub(r"(?<![\w.:/])\d{7,20}(?![\w.])", annotate, message)


def finite_float(text: str) -> float:
    """A finite number for float flags (NaN and infinities are refused with a message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds (NaN and infinities are refused with a message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds")
    return value


def comma_list(text: str | None) -> list[str]:
    """'a, b,,c' → ['a', 'b', 'c']: flags that take comma-separated lists."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def address_of(spec: str) -> str:
    """The SS58 address of anything that names an account (see the module docstring)."""
    return ss58_encode(resolve_account(spec))


def print_inclusion(result: dict) -> int:
    """Print where an extrinsic was included and its events; exit code 1 if the call failed on chain."""
    failed = call_failed(result)
    print(f"included in block #{result['blockNumber']} {result['blockHash']} (index {result['index']})")
    for event in result["events"]:
        print(f"  event {event['module']}.{event['name']} {json.dumps(event['data'])}")
    if failed:
        print(f"call failed: {failed['data'][1]}: {with_arena(str(failed['data'][2]))}", file=sys.stderr)
        return 1
    return 0


def setup_logging(level: str) -> None:
    """Structured log lines on stderr at `level` (debug, info, warning, ...)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def quiet_http_loggers() -> None:
    """HTTP client libraries log every request at INFO; long-running workers keep only their warnings."""
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
