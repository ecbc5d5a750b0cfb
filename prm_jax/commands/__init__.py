"""One module per `prm-jax` subcommand: `add_arguments(parser)` and `run(args) -> int`."""
