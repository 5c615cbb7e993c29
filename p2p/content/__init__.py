"""Embedded IPFS content store: UnixFS import/export, LevelDB blockstore, bitswap exchange.

See docs/content.md for what is stored where, the CID rules and the wire protocol.
"""
