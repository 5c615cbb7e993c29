"""The one RPC client: JSON-RPC over HTTP, plus signing and submitting extrinsics."""
from __future__ import annotations

import itertools
import time
from typing import Any

import httpx

from runtime.crypto import Keypair
from runtime.types import Call, Era, sign_extrinsic

DEFAULT_RPC = "http://127.0.0.1:9933"


class RpcClientError(Exception):
    """An error object returned by the node, or a transport failure."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class RpcClient:
    """Synchronous client for a node's JSON-RPC endpoint."""

    def __init__(self, url: str = DEFAULT_RPC, timeout: float = 30.0) -> None:
        self.url = url
        self._http = httpx.Client(timeout=timeout)
        self._ids = itertools.count(1)
        self._properties: dict | None = None

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        try:
            response = self._http.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise RpcClientError(-1, f"cannot reach node at {self.url}: {exc}") from exc
        reply = response.json()
        if "error" in reply:
            err = reply["error"]
            raise RpcClientError(err.get("code", -1), err.get("message", "?"), err.get("data"))
        return reply["result"]

    def properties(self) -> dict:
        if self._properties is None:
            self._properties = self.call("system_properties")
        return self._properties

    def sign(self, key: Keypair, module: str, function: str, args: list, *, nonce: int | None = None,
             tip: int = 0, era_period: int = 0) -> bytes:
        """Build and sign an extrinsic for this node's chain."""
        props = self.properties()
        genesis_hash = bytes.fromhex(props["genesisHash"][2:])
        if nonce is None:
            nonce = self.call("system_accountNextIndex", key.address)
        if era_period:
            best = self.call("chain_getHeader")
            era = Era(best["number"], era_period)
            birth_hash = bytes.fromhex(best["hash"][2:]) if best["number"] else genesis_hash
        else:
            era, birth_hash = Era(0, 0), genesis_hash
        return sign_extrinsic(key, Call(module, function, args), nonce, genesis_hash, props["specVersion"],
                              era, tip, birth_hash)

    def submit(self, encoded: bytes) -> str:
        return self.call("author_submitExtrinsic", "0x" + encoded.hex())

    def wait_for(self, xt_hash: str, timeout: float = 30.0) -> dict:
        """Poll until the extrinsic is in a block; returns its location and events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.call("arena_extrinsic", xt_hash)
            if found and found.get("status") == "inBlock":
                return found
            time.sleep(0.2)
        raise RpcClientError(-2, f"extrinsic {xt_hash} not included within {timeout:.0f} s")

    def submit_and_wait(self, key: Keypair, module: str, function: str, args: list, **kw: Any) -> dict:
        """Sign, submit, wait for inclusion; returns {blockHash, blockNumber, index, events}."""
        timeout = kw.pop("timeout", 30.0)
        return self.wait_for(self.submit(self.sign(key, module, function, args, **kw)), timeout)


def call_failed(result: dict) -> dict | None:
    """The ExtrinsicFailed event of an inclusion result, if the call failed."""
    for event in result.get("events", []):
        if event["module"] == "system" and event["name"] == "ExtrinsicFailed":
            return event
    return None
