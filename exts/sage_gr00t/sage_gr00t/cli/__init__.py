"""Console commands (`[project.scripts]` in pyproject.toml): one module per command, each with `main(argv)`
and flags derived from its config dataclass (tyro)."""
