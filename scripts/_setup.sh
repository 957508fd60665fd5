# Shared set-up steps of scripts/demo and scripts/test (sourced, not run).

ensure_tmux() {
    if ! command -v tmux >/dev/null 2>&1; then
        echo "tmux is missing: installing it with apt-get" >&2
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq tmux >/dev/null
    fi
}

ensure_venv() {
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check "$@"
}
