"""The house rules over node/, runtime/, consensus/ and p2p/ (issue 14), checked on every module.

- every module, package `__init__.py` included, opens with a docstring that says its one job;
- no function (method, nested function) is longer than `MAX_FUNCTION_LINES`, from `def` to its last line;
- no file is longer than `MAX_FILE_LINES` unless its module docstring has a line starting with
  `LONG_FILE_MARKER` that says why it is one file.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("node", "runtime", "consensus", "p2p")
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 500
LONG_FILE_MARKER = "One file because"


def house_violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Every breach of the house rules under `root`, one line each, in path order."""
    bad = []
    for path in sorted(p for pkg in packages for p in (root / pkg).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = path.read_text()
        tree = ast.parse(text, rel)
        doc = ast.get_docstring(tree) or ""
        if not doc.strip():
            bad.append(f"{rel}: no module docstring")
        lines = len(text.splitlines())
        if lines > MAX_FILE_LINES and not any(line.strip().startswith(LONG_FILE_MARKER) for line in doc.splitlines()):
            bad.append(f"{rel}: {lines} lines (over {MAX_FILE_LINES}) and no '{LONG_FILE_MARKER} ...' line in its docstring")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    bad.append(f"{rel}:{node.lineno}: {node.name} is {length} lines (over {MAX_FUNCTION_LINES})")
    return bad


# ---------------------------------------------------------------- the project


def test_the_house_keeps_its_rules():
    assert house_violations(ROOT) == []


# ---------------------------------------------------------------- the checker itself


def _body(lines: int, indent: int = 4) -> str:
    return "".join(f"{' ' * indent}x{i} = {i}\n" for i in range(lines))


def test_checker_finds_each_broken_rule(tmp_path):
    files = {
        "node/__init__.py": "",  # no docstring
        "node/ok.py": '"""One job."""\n\ndef short():\n' + _body(79),  # 80 lines: allowed
        "node/long_function.py": '"""One job."""\n\nclass A:\n    async def big(self):\n' + _body(80, 8),
        "runtime/__init__.py": '"""Runtime."""\n',
        "runtime/nested.py": '"""One job."""\n\ndef outer():\n    def inner():\n' + _body(90, 8) + "    return inner\n",
        "runtime/comment_first.py": '# a comment is no docstring\nX = 1\n',
        "consensus/__init__.py": '"""Consensus."""\n',
        "consensus/big.py": '"""One job."""\n' + "X = 1\n" * 500,  # 501 lines, no reason
        "consensus/big_ok.py": '"""One job.\n\nOne file because it is one protocol.\n"""\n' + "X = 1\n" * 500,
        "consensus/fits.py": '"""One job."""\n' + "X = 1\n" * 499,  # 500 lines: allowed
        "p2p/__init__.py": '"""P2p."""\n',
        "p2p/blank_doc.py": '"""  """\n',
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert house_violations(tmp_path) == [
        f"consensus/big.py: 501 lines (over 500) and no '{LONG_FILE_MARKER} ...' line in its docstring",
        "node/__init__.py: no module docstring",
        "node/long_function.py:4: big is 81 lines (over 80)",
        "p2p/blank_doc.py: no module docstring",
        "runtime/comment_first.py: no module docstring",
        "runtime/nested.py:3: outer is 93 lines (over 80)",
        "runtime/nested.py:4: inner is 91 lines (over 80)",
    ]
