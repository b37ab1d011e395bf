import typer

from lamplighter.core.clikit import local_db
from tests.fixture_domain import service

fixture_app = typer.Typer(help="The fixture domain.", no_args_is_help=True)


@fixture_app.command("count")
def count() -> None:
    """How many entity arrivals the fixture domain saw."""
    db = local_db()
    try:
        with db.sessionmaker() as session:
            typer.echo(len(service.sightings(session=session)))
    finally:
        db.dispose()
