"""Python client of the IPTO ingestion API.

``AsyncClient`` (trio) and ``Client`` (blocking) have the same methods, one per endpoint of
the HTTP contract; errors are :mod:`engine.client.errors`; ``upload_file`` does the whole
initiate → upload → confirm, resumable, with parts in parallel.

    async with AsyncClient("http://127.0.0.1:8080", api_key="ipto_…") as api:
        ds = await api.create_dataset("Invoices")
        result = await api.upload_file(ds["dataset_id"], Path("invoice.pdf"), content_type="application/pdf")
"""

from engine.client.aio import DEFAULT_URL, AsyncClient
from engine.client.errors import ApiError, ConnectionFailed, IptoError
from engine.client.models import IMPORT_TERMINAL, JOB_TERMINAL, Page
from engine.client.retry import NO_RETRY, RetryPolicy
from engine.client.sync import Client
from engine.client.transfer import ResumeStore, UploadEvents, UploadResult

__all__ = [
    "DEFAULT_URL",
    "IMPORT_TERMINAL",
    "JOB_TERMINAL",
    "NO_RETRY",
    "ApiError",
    "AsyncClient",
    "Client",
    "ConnectionFailed",
    "IptoError",
    "Page",
    "ResumeStore",
    "RetryPolicy",
    "UploadEvents",
    "UploadResult",
]
