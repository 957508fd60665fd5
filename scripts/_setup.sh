# Shared set-up steps of scripts/demo and scripts/test (sourced, not run).

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_tmux() {
    if ! command -v tmux >/dev/null 2>&1; then
        echo "tmux is missing: installing it with apt-get" >&2
        as_root apt-get update -qq && as_root apt-get install -y -qq tmux >/dev/null
    fi
}

# The tests check the C log writer against the others, so they want a C compiler; without
# one (and no apt-get), they still run, and the C cases are skipped.
ensure_cc() {
    if ! command -v cc >/dev/null 2>&1; then
        echo "no C compiler: installing gcc with apt-get" >&2
        { as_root apt-get update -qq && as_root apt-get install -y -qq gcc >/dev/null; } ||
            echo "could not install gcc: the C log writer's tests will be skipped" >&2
    fi
}

ensure_venv() {
    if ! python3 -m venv .venv >/dev/null 2>&1; then
        # Debian and Ubuntu ship venv separately from python3.
        echo "python3 venv support is missing: installing python3-venv with apt-get" >&2
        as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check "$@"
}
