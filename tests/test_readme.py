"""Every `nodeflow` command in the README runs as written (from a scratch folder, on the embedded model).

The commands are read out of the README's ``bash`` blocks, so an edit to the README is
tested as it is. `nodeflow serve` is started and asked for its front page; install
commands (pip) are what `.ci/run` runs, so they are not repeated here. Commands whose
README comment says "exit 1 if any" are expected to find problems.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    commands: list[str] = []
    for line in lines:
        for part in line.split("&&"):
            part = part.strip()
            if part.startswith("nodeflow "):
                commands.append(part)
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_commands_to_check():
    assert len(COMMANDS) >= 8 and any(c.startswith("nodeflow serve") for c in COMMANDS)


def _run(argv: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nodeflow.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("command", [c for c in COMMANDS if not c.startswith("nodeflow serve")])
def test_a_readme_command_runs_as_written(command, tmp_path):
    argv = [str(tmp_path / a[2:]) if a.startswith("~/") else a for a in shlex.split(command)[1:]]  # the shell's ~
    cwd = tmp_path / "work"
    cwd.mkdir()
    if "workflows/" in command:  # relative to the repository, as the README is read in a checkout
        cwd = README.parent
        argv = [a if a != "outputs" else str(tmp_path / "outputs") for a in argv]
        argv += ["--out", str(tmp_path / "outputs")] if argv[0] == "run" and "--out" not in argv else []
    proc = _run(argv, cwd, tmp_path)
    expected = 1 if "validate" in argv[0] and "strength=0.01" in command else 0
    assert proc.returncode == expected, proc.stderr[-2000:]


def test_the_readme_serve_command_serves_the_editor(tmp_path):
    (command,) = [c for c in COMMANDS if c.startswith("nodeflow serve")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [*shlex.split(command)[1:], "--port", str(port), "--data-dir", str(tmp_path / "data")]
    server = subprocess.Popen([sys.executable, "-m", "nodeflow.cli", *argv], env={**os.environ, "HOME": str(tmp_path)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not come up"
                time.sleep(0.2)
        assert "<script" in page and "not installed" not in page
    finally:
        server.terminate()
        server.wait(timeout=60)
