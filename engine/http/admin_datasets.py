"""Platform admins' moderation of any tenant's dataset (``admin:*`` only): suspend, unsuspend."""

from __future__ import annotations

from quart import Blueprint, Response

from engine.auth import ADMIN_SCOPE, Principal
from engine.http.api import services
from engine.http.datasets import dataset_view
from engine.http.respond import ok
from engine.http.routes import route
from engine.http.schemas import ref

bp = Blueprint("admin_datasets", __name__)


@route(bp, "POST", "/v1/admin/datasets/<dataset_id>/suspend", summary="Suspend a dataset", scope=ADMIN_SCOPE,
       ok=(200, ref("Dataset")), errors=(409,))
async def suspend(principal: Principal, dataset_id: str) -> Response:
    return ok(dataset_view(await services().datasets.moderate(dataset_id, suspend=True)))


@route(bp, "POST", "/v1/admin/datasets/<dataset_id>/unsuspend", summary="Lift a suspension", scope=ADMIN_SCOPE,
       ok=(200, ref("Dataset")), errors=(409,))
async def unsuspend(principal: Principal, dataset_id: str) -> Response:
    return ok(dataset_view(await services().datasets.moderate(dataset_id, suspend=False)))
