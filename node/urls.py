"""Addresses the CLI turns into one another: a node's RPC URL into its IPFS API multiaddr."""
from __future__ import annotations


def ipfs_api_multiaddr(rpc_url: str, ipfs_api: str | None) -> str:
    """The IPFS API to use: `--ipfs-api` (a multiaddr, or an http:// URL), else the node's RPC port.

    A node on another host works the same: http://10.0.0.5:9933 → /ip4/10.0.0.5/tcp/9933/http,
    http://node.example:9933 → /dns/node.example/tcp/9933/http, http://[fd00::5]:9933 → /ip6/….
    """
    import ipaddress
    from urllib.parse import urlsplit

    text = ipfs_api or rpc_url
    if text.startswith("/"):
        return text
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if not parts.hostname:
        raise ValueError(f"{text!r} is neither a multiaddr nor an http URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        proto = "ip6" if ipaddress.ip_address(parts.hostname).version == 6 else "ip4"
    except ValueError:
        proto = "dns"
    return f"/{proto}/{parts.hostname}/tcp/{port}/{'https' if parts.scheme == 'https' else 'http'}"
