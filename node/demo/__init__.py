"""`make demo` (`python -m node.demo`): a narrated 4-node local network running whole task lifecycles.

Rooms: `network` starts and stops the nodes and workers (and holds what every part of the demo
shares), `story` narrates the tasks from chain events and RPC, as any user could follow them,
`market` serves, queries and pays for the top models, `run` puts them in order and decides the
exit status. Nothing here is imported by the node or the workers.
"""
