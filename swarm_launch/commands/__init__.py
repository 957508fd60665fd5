"""One module per subcommand; each exposes `run(globals_, **options) -> int` (the exit code)."""
