from fastapi import APIRouter

from lamplighter.core.deps import CurrentActor, SessionDep
from tests.fixture_domain import service

router = APIRouter(prefix="/fixture", tags=["fixture"])


@router.get("/sightings")
def list_sightings(session: SessionDep, actor: CurrentActor) -> dict[str, list[str]]:
    return {"refs": service.sightings(session=session)}
