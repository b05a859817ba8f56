"""Subcommands of `wirelet`. Each module exposes `register(subparsers)`; the parser it adds sets
`func(args) -> int`, which `gateway.cli.main` calls."""
