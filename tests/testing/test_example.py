"""The example application test (examples/test_app_example.py) and the testing guide that shows it.

The example is run as a user would run it: pytest in a subprocess (with
pytest-asyncio in strict mode, as in a project without this repository's
configuration), and as a program. The guide's Python blocks must be valid
Python, and the ones taken from the example must be in it word for word.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "test_app_example.py"
GUIDE = REPO / "docs" / "guides" / "testing.md"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
EXAMPLE_TESTS = 5


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)


def test_the_example_passes_under_pytest() -> None:
    strict = ("-o", "asyncio_mode=strict")  # what a project without this repository's settings has
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *strict, str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{EXAMPLE_TESTS} passed" in result.stdout, result.stdout


def test_the_example_runs_as_a_program() -> None:
    result = run(sys.executable, str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{EXAMPLE_TESTS} passed" in result.stdout, result.stdout


def test_the_example_has_the_tests_the_guide_counts() -> None:
    tree = ast.parse(EXAMPLE.read_text(encoding="utf-8"))
    tests = [n.name for n in tree.body if isinstance(n, ast.AsyncFunctionDef) and n.name.startswith("test_")]
    assert len(tests) == EXAMPLE_TESTS, tests
    assert "three more tests" in GUIDE.read_text(encoding="utf-8")  # the two shown, and three more


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_guides_python_is_python_and_its_example_code_is_the_examples() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    example = EXAMPLE.read_text(encoding="utf-8")
    blocks = python_blocks(guide)
    assert len(blocks) >= 6
    shown = 0
    for block in blocks:
        source = block if not block.startswith(" ") else "if True:\n" + block
        try:
            ast.parse(source)
        except SyntaxError:
            # A fragment of a test (awaits outside a function): valid inside one.
            ast.parse("async def f():\n" + "".join("    " + line + "\n" for line in block.splitlines()))
        if block.startswith(("def make_app", "async def test_")):
            assert block in example, f"the guide's block is not in {EXAMPLE.name}:\n{block}"
            shown += 1
    assert shown == 3  # the application and two of its tests
