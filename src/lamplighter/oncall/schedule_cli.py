"""``lamplighter schedule`` and ``lamplighter oncall`` (being written)."""

import typer

schedule_app = typer.Typer(
    help="On-call schedules: show, export as iCalendar.", no_args_is_help=True
)
oncall_app = typer.Typer(help="Who is on call.", no_args_is_help=True)
