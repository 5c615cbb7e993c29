"""A plain node installs and runs without the `workers` extra (torch, scikit-learn, safetensors).

The ML packages are blocked in a child interpreter (`sys.modules[name] = None` makes any import of
them fail, as if not installed): the node's modules import, a real `arena node --dev` process
authors blocks and answers RPC, and an ML worker role fails with a message naming the extra.
"""
import os
import subprocess
import sys

import pytest

from node.offchain.worker import ML_PACKAGES
from tests.helpers import ALICE, BOB, ROOT, NodeProcess

BLOCK = f"import sys\nfor _name in {ML_PACKAGES!r}:\n    sys.modules[_name] = None\n"


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_node_modules_import_without_ml_packages():
    result = run_blocked(
        "import node.cli, node.service, node.localnet, node.offchain.supervisor, node.offchain.worker\n"
        "from node.offchain.worker import role_runner\n"
        "try:\n"
        "    role_runner('trainer')\n"
        "except ValueError as exc:\n"
        "    print('refused:', exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "refused: the trainer worker needs torch" in result.stdout and "arena[workers]" in result.stdout


def test_the_blocker_blocks():
    """The check above can fail: a module that imports torch at the top does not import under the blocker."""
    result = run_blocked("import node.offchain.trainer_worker\n")
    assert result.returncode != 0 and "import of torch halted" in result.stderr


@pytest.mark.integration
def test_dev_node_runs_without_ml_packages(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "blocked"
    # sitecustomize runs at interpreter start: the node process sees the ML packages as missing.
    (site / "sitecustomize.py").write_text(BLOCK + f"open({str(marker)!r}, 'w').close()\n")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(site)
    try:
        node = NodeProcess(tmp_path / "plain", "--dev").start()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    try:
        assert marker.exists()
        client = node.client()
        before = client.call("arena_account", BOB.address)["free"]
        result = client.submit_and_wait(ALICE, "balances", "transfer", [BOB.public_key, 777])
        assert ("balances", "Transfer") in [(e["module"], e["name"]) for e in result["events"]]
        assert client.call("arena_account", BOB.address)["free"] == before + 777
        assert node.proc is not None and node.proc.poll() is None
        log = node.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        node.stop()
