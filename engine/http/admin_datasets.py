"""Platform admins' moderation of any tenant's dataset (``admin:*`` only): suspend, unsuspend."""

from __future__ import annotations

from quart import Blueprint, Response

from engine.auth import ADMIN_SCOPE, Principal
from engine.http.api import endpoint, services
from engine.http.datasets import dataset_view
from engine.http.respond import ok

bp = Blueprint("admin_datasets", __name__)


@bp.post("/v1/admin/datasets/<dataset_id>/suspend")
@endpoint(ADMIN_SCOPE)
async def suspend(principal: Principal, dataset_id: str) -> Response:
    return ok(dataset_view(await services().datasets.moderate(dataset_id, suspend=True)))


@bp.post("/v1/admin/datasets/<dataset_id>/unsuspend")
@endpoint(ADMIN_SCOPE)
async def unsuspend(principal: Principal, dataset_id: str) -> Response:
    return ok(dataset_view(await services().datasets.moderate(dataset_id, suspend=False)))
