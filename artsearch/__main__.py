"""`python -m artsearch` runs the command-line interface."""

from artsearch.cli import main

main()
