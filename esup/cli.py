"""The ``esup`` command: one entry point, subcommands for operators and inspectors.

Each module in ``esup.commands`` adds its own subcommands through ``register(app)``, so a feature
keeps its command line next to nothing else and this file never grows.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from esup import commands

app = typer.Typer(
    name="esup",
    help="电子监察 esupervision：政务服务办件实时监察、预警与考核。",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"esup.commands.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main() -> None:
    app()
