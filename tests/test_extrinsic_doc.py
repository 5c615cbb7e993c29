"""docs/examples/submit_transfer.py (pynacl + msgpack only) works against a real dev node."""
import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, NodeProcess

pytestmark = pytest.mark.integration


def test_documented_example_submits_a_transfer(tmp_path):
    node = NodeProcess(tmp_path / "n", "--dev").start()
    try:
        out = subprocess.run([sys.executable, str(ROOT / "docs/examples/submit_transfer.py"), node.url],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        result = json.loads(out)
        names = [e["name"] for e in result["events"]]
        assert "Transfer" in names and "ExtrinsicSuccess" in names
    finally:
        node.stop()
