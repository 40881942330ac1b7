"""`python -m logstream` is the `logstream` command."""

from logstream.cli import main

main()
