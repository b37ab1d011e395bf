"""``lamplighter alert`` and ``lamplighter integration`` (being written)."""

import typer

alert_app = typer.Typer(help="Alerts: list, acknowledge, resolve, silence.", no_args_is_help=True)
integration_app = typer.Typer(
    help="Alert integrations: create, rotate the key.", no_args_is_help=True
)
