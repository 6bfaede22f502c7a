"""CLI subcommands of the library (the trainer, evaluator and app add their own)."""
