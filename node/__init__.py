"""The Arena node process: chain store, transaction pool, RPC, sync and the composition root (`node/service.py`)."""
