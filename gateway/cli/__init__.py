"""``medsettle``, the command line: ``gateway.cli.main`` builds the parser, one module per group of commands."""
