"""`mnist-rnn config show|validate`: resolve a config without training."""

from __future__ import annotations

import sys

from mnist_rnn.cli.app import ConfigOpt, SetOpt, config_app, err_console, load, run

# ----------------------------------------------------------------------------------------- config


@config_app.command(
    "show",
    epilog="Examples:\n\n  mnist-rnn config show -c configs/lstm.yaml\n\n"
    "  mnist-rnn config show -c configs/default.yaml --set train.epochs=3",
)
def config_show(config: ConfigOpt, overrides: SetOpt = None) -> None:
    """Print the fully resolved config (defaults, `base:` chain and --set applied) as YAML."""
    from mnist_rnn.config_files import dump_config

    cfg = run(load, config, overrides)
    sys.stdout.write(dump_config(cfg))


@config_app.command("validate", epilog="Example:\n\n  mnist-rnn config validate -c configs/gru_stacked.yaml")
def config_validate(config: ConfigOpt, overrides: SetOpt = None) -> None:
    """Check a config; exit 0 if it is valid, else print the problem and exit 2."""
    run(load, config, overrides)
    err_console.print(f"{config}: valid", highlight=False, markup=False)
