"""Which tmux server a client talks to: its socket path, resolved as tmux resolves it.

A server has many names (`-L default` or none, its `-S` path, a path through a symlink,
inside tmux the server in $TMUX); comparing resolved socket paths tells them apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def socket_of(socket_name: str | None, socket_path: str | None, *,
              environ: Mapping[str, str] | None = None) -> str:
    """The socket path a tmux client given these -L/-S uses, made absolute and real.

    As tmux 3.3 does: -S as given; with neither, inside tmux, the server in $TMUX; else
    NAME (or `default`) in `tmux-UID` under TMUX_TMPDIR, or under /tmp when TMUX_TMPDIR is
    unset, empty or not an existing directory (tmux skips a directory it cannot resolve).
    """
    env = os.environ if environ is None else environ
    if socket_path:
        return os.path.realpath(socket_path)
    if not socket_name and env.get("TMUX"):
        return os.path.realpath(env["TMUX"].split(",")[0])
    tmpdir = env.get("TMUX_TMPDIR") or ""
    directory = os.path.realpath(tmpdir) if tmpdir and os.path.isdir(tmpdir) else "/tmp"
    base = os.path.realpath(os.path.join(directory, f"tmux-{os.getuid()}"))
    return os.path.join(base, socket_name or "default")


def same_socket(one: str, other: str) -> bool:
    """Whether two socket paths name one server."""
    return os.path.realpath(one) == os.path.realpath(other)


def server_listening(path: str) -> bool:
    """Whether a tmux server accepts connections at `path`. A server that exited leaves its
    socket file behind, so existence says nothing; a connect (~0.1 ms, against a few ms
    for a tmux client) does. Anything else than a refusal or no file counts as a server:
    the caller then asks tmux, which says what is wrong."""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a stopped server with a full backlog: tmux's turn to say
    try:
        probe.connect(path)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        return False
    except OSError:
        return True
    finally:
        probe.close()
    return True


_SUN_PATH_MAX = 108  # Linux's limit on a Unix socket's path, its final NUL included


def no_socket_file(path: str) -> bool:
    """Nothing at the server's socket path, so no server (a first `up` starts one): the
    few ms of a tmux client that would say so are saved. Anything else there, or a path
    that cannot be looked at or is too long for a socket, is for tmux to judge (and name)."""
    if len(os.fsencode(path)) >= _SUN_PATH_MAX:
        return False
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False
