"""The README's Python example runs as written (on an isolated tmux server)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tmux
README = pathlib.Path(__file__).parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path: pathlib.Path) -> None:
    match = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert match is not None
    script = tmp_path / "example.py"
    script.write_text(match[1])
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ), check=False)
    assert result.returncode == 0, result.stderr
    assert "alpha said: got hello" in result.stdout
    assert "['alpha', 'beta', 'gamma'] swarm-workers" in result.stdout
