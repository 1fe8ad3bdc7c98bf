"""The editor's pure modules (web/js): ``node --test tests/web/`` must pass.

Document conversion, PNG text chunks, undo history, search, the run book, the browser
session store, the vocabulary, menus and the type table are tested in Node without a
browser (tests/web/*.test.mjs). Skips, saying so, only when ``node`` is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the editor's unit tests (tests/web/*.test.mjs) need `node` >= 20")
def test_the_editor_unit_tests_pass_in_node() -> None:
    files = sorted(str(f.relative_to(REPO)) for f in (REPO / "tests" / "web").glob("*.test.mjs"))
    assert files, "no tests/web/*.test.mjs found"
    result = subprocess.run([NODE, "--test", *files], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# ") or "not ok" in line)
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert "# pass" in summary and "# fail 0" in summary, summary
