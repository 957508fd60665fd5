"""Which server a tmux client talks to, resolved as tmux 3.3 resolves it (no tmux needed)."""

from __future__ import annotations

import os
import pathlib

import pytest

from swarm_launch.sockets import same_socket, server_listening, socket_of


@pytest.fixture
def tmpdir_env(tmp_path: pathlib.Path) -> dict[str, str]:
    (tmp_path / "real").mkdir()
    return {"TMUX_TMPDIR": str(tmp_path / "real")}


def test_a_name_lives_in_tmux_uid_under_tmux_tmpdir(tmpdir_env: dict[str, str]) -> None:
    base = os.path.join(tmpdir_env["TMUX_TMPDIR"], f"tmux-{os.getuid()}")
    assert socket_of("x", None, environ=tmpdir_env) == os.path.join(base, "x")
    assert socket_of(None, None, environ=tmpdir_env) == os.path.join(base, "default")
    assert socket_of("default", None, environ=tmpdir_env) == os.path.join(base, "default")


def test_inside_tmux_no_name_means_the_server_in_tmux(tmpdir_env: dict[str, str]) -> None:
    inside = {**tmpdir_env, "TMUX": "/somewhere/sock,123,0"}
    assert socket_of(None, None, environ=inside) == "/somewhere/sock"
    assert socket_of("x", None, environ=inside) == socket_of("x", None, environ=tmpdir_env)


def test_tmux_tmpdir_that_does_not_exist_falls_back_to_tmp(tmp_path: pathlib.Path) -> None:
    gone = {"TMUX_TMPDIR": str(tmp_path / "nope")}
    expected = os.path.join(os.path.realpath(f"/tmp/tmux-{os.getuid()}"), "x")
    assert socket_of("x", None, environ=gone) == expected
    assert socket_of("x", None, environ={"TMUX_TMPDIR": ""}) == expected


def test_relative_and_symlinked_paths_resolve_to_one_socket(
    tmp_path: pathlib.Path, tmpdir_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    by_name = socket_of("x", None, environ=tmpdir_env)
    assert socket_of("x", None, environ={"TMUX_TMPDIR": "link"}) == by_name
    uid_dir = f"tmux-{os.getuid()}"
    assert socket_of(None, f"real/{uid_dir}/x", environ={}) == by_name
    assert same_socket(f"link/{uid_dir}/x", by_name)
    assert not same_socket(f"link/{uid_dir}/y", by_name)


def test_server_listening_tells_a_live_socket_from_one_left_behind(tmp_path: pathlib.Path) -> None:
    import socket

    path = str(tmp_path / "s")
    assert not server_listening(path)  # no file
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    assert server_listening(path)
    listener.close()  # the file stays, as a killed tmux server's does
    assert os.path.exists(path) and not server_listening(path)
