"""``python -m gateway.cli``: the ``medsettle`` command, as worker processes and tests start it."""

from gateway.cli.main import main

main()
