"""Sign and submit a balances.transfer with nothing but pynacl, msgpack and the standard library.

    python docs/examples/submit_transfer.py http://127.0.0.1:9933

Follows docs/extrinsic-format.md step by step; tests/test_extrinsic_doc.py runs it against a node.
"""
import hashlib
import json
import sys
import time
import urllib.request

import msgpack
import nacl.signing


def rpc(url, method, *params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    reply = json.load(urllib.request.urlopen(req))
    if "error" in reply:
        raise SystemExit(f"{method}: {reply['error']['message']} (code {reply['error']['code']})")
    return reply["result"]


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9933"

# 1. keys: the dev account "alice" has seed blake2b-256(b"arena-dev-seed/alice")
seed = hashlib.blake2b(b"arena-dev-seed/alice", digest_size=32).digest()
signer = nacl.signing.SigningKey(seed)
signer_id = bytes(signer.verify_key)
dest = bytes(nacl.signing.SigningKey(hashlib.blake2b(b"arena-dev-seed/bob", digest_size=32).digest()).verify_key)

# 2. chain facts: genesis hash, spec version, the signer's next nonce
props = rpc(url, "system_properties")
genesis_hash = bytes.fromhex(props["genesisHash"][2:])
spec_version = props["specVersion"]
nonce = rpc(url, "system_accountNextIndex", "0x" + signer_id.hex())

# 3. call, extra (immortal era: birth 0, period 0 -> birth hash = genesis hash), tip
call = ["balances", "transfer", [dest, 1_000_000_000]]
extra = [nonce, [0, 0], 0]
payload = pack([call, extra, genesis_hash, spec_version, genesis_hash])
signature = signer.sign(payload).signature

# 4. the extrinsic is the list [signer, signature, extra, call]
extrinsic = pack([signer_id, signature, extra, call])
xt_hash = rpc(url, "author_submitExtrinsic", "0x" + extrinsic.hex())
assert xt_hash == "0x" + hashlib.blake2b(extrinsic, digest_size=32).hexdigest()

# 5. wait for inclusion
for _ in range(60):
    found = rpc(url, "arena_extrinsic", xt_hash)
    if found and found["status"] == "inBlock":
        print(json.dumps(found, indent=2))
        break
    time.sleep(0.5)
else:
    raise SystemExit("not included within 30 s")
