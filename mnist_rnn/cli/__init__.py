"""The `mnist-rnn` command line: a thin layer that parses, loads the config, calls one function of the
package and maps its errors to exit codes (`app.run`). One module per command group registers its
commands on the app when imported here.
"""

from mnist_rnn.cli import catalog, configs, scoring, serving, sweeping, training  # noqa: F401  (register)
from mnist_rnn.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app(prog_name="mnist-rnn")


if __name__ == "__main__":  # pragma: no cover
    main()
