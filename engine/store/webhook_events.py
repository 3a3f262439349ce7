"""The events webhooks announce (API.md "Webhooks") and the ``data`` each one carries.

Both stores call these builders inside the transaction that makes the change, and hand
the result to their outbox ``emit``; so the two backends announce the same things alike.
"""

from __future__ import annotations

from typing import Any

from engine.ids import iso
from engine.store.records import Access, Dataset, ImportJob, ObjectRecord

EVENT_TYPES: tuple[str, ...] = (
    "object.uploaded",
    "object.status_changed",
    "object.review_decided",
    "import.finished",
    "dataset.updated",
    "access.created",
    "dispute.opened",
    "dispute.resolved",
    "payout.pending",
    "payout.released",
)


def object_data(obj: ObjectRecord) -> dict[str, Any]:
    return {
        "object_id": obj.id, "dataset_id": obj.dataset_id, "original_filename": obj.original_filename,
        "mime_type": obj.mime_type, "size_bytes": obj.size_bytes, "checksum_sha256": obj.checksum_sha256,
        "status": obj.status, "review_state": obj.review_state,
    }


def status_changed(obj: ObjectRecord, previous: str, status: str, job_id: str | None = None, reason: str | None = None) -> dict[str, Any]:
    return {"object_id": obj.id, "dataset_id": obj.dataset_id, "previous_status": previous, "status": status,
            "job_id": job_id, "failure_reason": reason}


def review_decided(obj: ObjectRecord, decision: str, reason: str | None, job_id: str | None = None) -> dict[str, Any]:
    """``decision``: approved | rejected | expired."""
    return {"object_id": obj.id, "dataset_id": obj.dataset_id, "decision": decision, "reason": reason, "job_id": job_id}


def import_finished(imp: ImportJob) -> dict[str, Any]:
    return {
        "import_id": imp.id, "dataset_id": imp.dataset_id, "filename": imp.filename, "status": imp.status,
        "accepted_count": imp.accepted_count, "rejected_count": imp.rejected_count, "reason": imp.reason,
        "finished_at": iso(imp.finished_at),
    }


def dataset_updated(ds: Dataset, changed: list[str]) -> dict[str, Any]:
    return {"dataset_id": ds.id, "name": ds.name, "status": ds.status, "visibility": ds.visibility,
            "monetization_mode": ds.monetization_mode, "changed": sorted(changed)}


def dispute_data(d: Any) -> dict[str, Any]:
    """A dispute (``engine.store.money.Dispute``): opened by the buyer, resolved by an admin."""
    return {"dispute_id": d.id, "access_id": d.access_id, "dataset_id": d.dataset_id, "amount_micros": d.amount_micros,
            "currency": d.currency, "period": d.period, "status": d.status, "resolved_at": iso(d.resolved_at)}


def payout_pending(p: Any, release_at: Any) -> dict[str, Any]:
    """A statement whose month ended (``engine.store.money.Payout``): its amounts are not
    final until it is released (disputes may still be opened), so none are sent."""
    return {"payout_id": p.id, "period": p.period, "currency": p.currency, "period_start": iso(p.period_start),
            "period_end": iso(p.period_end), "status": "pending", "release_at": iso(release_at)}


def payout_data(p: Any) -> dict[str, Any]:
    """A released payout statement (``engine.store.money.Payout``)."""
    return {"payout_id": p.id, "period": p.period, "currency": p.currency, "gross_micros": p.gross_micros,
            "fee_micros": p.fee_micros, "refunds_micros": p.refunds_micros, "held_micros": p.held_micros,
            "earnings_micros": p.earnings_micros, "released_at": iso(p.released_at)}


def access_created(access: Access) -> dict[str, Any]:
    """Sent to the provider: who bought is not said (other tenants are never revealed)."""
    return {"access_id": access.id, "dataset_id": access.dataset_id, "object_id": access.object_id,
            "amount_micros": access.amount_micros, "fee_micros": access.fee_micros, "currency": access.currency,
            "created_at": iso(access.created_at)}
