"""Arena networking: libp2p host, gossip topics, request/response, peer scoring (see docs/networking.md)."""

from p2p.batcher import BatchDecodeError, ExtrinsicBatcher, decode_batch, encode_batch
from p2p.config import NetworkConfig, NetworkConfigError, NetworkLimits
from p2p.gossip import MessageTooLarge, Topic, Verdict
from p2p.host import NetworkService, NodeKeyError, NotRunning
from p2p.peers import PeerManager, Penalty
from p2p.reqresp import BadResponse, RemoteError, RequestError, RequestTimeout, UnsupportedProtocol

__all__ = [
    "BadResponse",
    "BatchDecodeError",
    "ExtrinsicBatcher",
    "MessageTooLarge",
    "NetworkConfig",
    "NetworkConfigError",
    "NetworkLimits",
    "NetworkService",
    "NodeKeyError",
    "NotRunning",
    "PeerManager",
    "Penalty",
    "RemoteError",
    "RequestError",
    "RequestTimeout",
    "Topic",
    "UnsupportedProtocol",
    "Verdict",
    "decode_batch",
    "encode_batch",
]
