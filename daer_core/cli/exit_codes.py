"""The exit codes of every ``daer`` command — one definition, documented in docs/cli.md."""

EXIT_OK = 0        # success
EXIT_RUNTIME = 1   # the input was well-formed but running failed
EXIT_PROBLEMS = 1  # `daer data check`: the data has error-level problems
EXIT_USAGE = 2     # usage or config error
