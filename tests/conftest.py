"""Test isolation: every test gets its own AI_SWARM_DIR, HOME and tmux socket directory.

TMUX_TMPDIR points at a private directory, so even a tmux call that forgot its
socket cannot reach the user's default server; libtmux's `server` fixture then
gives each test its own server on a unique socket inside it.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def writer_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where `up` builds the C log writer: one directory per test session (per xdist
    worker), so the writer is compiled once, not in every test's AI_SWARM_DIR."""
    return str(tmp_path_factory.mktemp("writer-cache"))


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, writer_cache: str
) -> Iterator[pathlib.Path]:
    """A private AI_SWARM_DIR, HOME and TMUX_TMPDIR for each test; no inherited $TMUX."""
    swarm_dir = tmp_path / "ai_swarm"
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    # Socket paths are limited to ~100 bytes: keep TMUX_TMPDIR short.
    tmux_tmpdir = tempfile.mkdtemp(prefix="sl-")
    monkeypatch.setenv("AI_SWARM_DIR", str(swarm_dir))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMUX_TMPDIR", tmux_tmpdir)
    monkeypatch.setenv("SWARM_LAUNCH_CACHE_DIR", writer_cache)
    monkeypatch.setenv("SHELL", "/bin/sh")
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    yield swarm_dir
    _kill_leftover_servers(tmux_tmpdir)


def _kill_leftover_servers(tmux_tmpdir: str) -> None:
    """Reap any tmux server a test started through the CLI on its own socket."""
    import shutil
    import subprocess

    socket_dir = os.path.join(tmux_tmpdir, f"tmux-{os.getuid()}")
    if os.path.isdir(socket_dir):
        for name in os.listdir(socket_dir):
            subprocess.run(
                ["tmux", "-S", os.path.join(socket_dir, name), "kill-server"],
                capture_output=True, check=False, timeout=10,
                env={**os.environ, "TMUX_TMPDIR": tmux_tmpdir},
            )
    shutil.rmtree(tmux_tmpdir, ignore_errors=True)
