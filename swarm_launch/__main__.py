"""`python -m swarm_launch` runs the CLI."""

from swarm_launch.cli import main

main()
