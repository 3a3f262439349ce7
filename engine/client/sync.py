"""A blocking client: the async one, run in a private trio loop on a daemon thread.

Every method of :class:`Client` forwards to the :class:`~engine.client.aio.AsyncClient`
method of the same name (same arguments, same types, same retries and errors) through
``trio.from_thread``; ``iter_*`` methods become plain iterators. Use it from ordinary
threads (not from inside a trio task of another loop: use the async client there).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio

from engine.client.aio import DEFAULT_URL, AsyncClient

P = ParamSpec("P")
T = TypeVar("T")


class _Portal:
    """A trio loop on its own thread, running whatever the caller hands it."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), name="ipto-client", daemon=True)
        self._thread.start()
        self._ready.wait()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._ready.set()
        await self._stop.wait()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def close(self) -> None:
        if self._thread.is_alive():
            assert self._stop is not None
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join()


def _sync(fn: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, *args: P.args, **kwargs: P.kwargs) -> T:
        async def call() -> T:
            return await fn(self.aio, *args, **kwargs)

        return self._portal.run(call)

    method.__name__, method.__doc__ = fn.__name__, fn.__doc__
    return method


def _sync_iter(fn: Callable[Concatenate[AsyncClient, P], AsyncIterator[T]]) -> Callable[Concatenate[Client, P], Iterator[T]]:
    def method(self: Client, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        agen = fn(self.aio, *args, **kwargs)
        try:
            while True:
                try:
                    yield self._portal.run(agen.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                self._portal.run(aclose)

    method.__name__, method.__doc__ = fn.__name__, fn.__doc__
    return method


class Client:
    """``with Client(url, token=…) as api: api.get_dataset("dset_…")`` — see AsyncClient."""

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        self._portal = _Portal()
        self.aio = AsyncClient(url, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._portal.run(self.aio.aclose)
        finally:
            self._portal.close()

    @property
    def token(self) -> str | None:
        return self.aio.token

    call = _sync(AsyncClient.call)
    health = _sync(AsyncClient.health)
    signup = _sync(AsyncClient.signup)
    login = _sync(AsyncClient.login)
    logout = _sync(AsyncClient.logout)
    me = _sync(AsyncClient.me)
    create_api_key = _sync(AsyncClient.create_api_key)
    list_api_keys = _sync(AsyncClient.list_api_keys)
    iter_api_keys = _sync_iter(AsyncClient.iter_api_keys)
    get_api_key = _sync(AsyncClient.get_api_key)
    update_api_key = _sync(AsyncClient.update_api_key)
    revoke_api_key = _sync(AsyncClient.revoke_api_key)
    create_dataset = _sync(AsyncClient.create_dataset)
    list_datasets = _sync(AsyncClient.list_datasets)
    iter_datasets = _sync_iter(AsyncClient.iter_datasets)
    get_dataset = _sync(AsyncClient.get_dataset)
    update_dataset = _sync(AsyncClient.update_dataset)
    update_datasets = _sync(AsyncClient.update_datasets)
    delete_dataset = _sync(AsyncClient.delete_dataset)
    suspend_dataset = _sync(AsyncClient.suspend_dataset)
    unsuspend_dataset = _sync(AsyncClient.unsuspend_dataset)
    set_schema = _sync(AsyncClient.set_schema)
    catalog = _sync(AsyncClient.catalog)
    iter_catalog = _sync_iter(AsyncClient.iter_catalog)
    initiate_upload = _sync(AsyncClient.initiate_upload)
    create_upload = _sync(AsyncClient.create_upload)
    put_presigned = _sync(AsyncClient.put_presigned)
    confirm_upload = _sync(AsyncClient.confirm_upload)
    complete_upload = _sync(AsyncClient.complete_upload)
    upload_file = _sync(AsyncClient.upload_file)
    search = _sync(AsyncClient.search)
    iter_search = _sync_iter(AsyncClient.iter_search)
    access = _sync(AsyncClient.access)
    retrieve = _sync(AsyncClient.retrieve)
    create_grant = _sync(AsyncClient.create_grant)
    list_grants = _sync(AsyncClient.list_grants)
    delete_grant = _sync(AsyncClient.delete_grant)
    get_object = _sync(AsyncClient.get_object)
    list_objects = _sync(AsyncClient.list_objects)
    iter_objects = _sync_iter(AsyncClient.iter_objects)
    delete_object = _sync(AsyncClient.delete_object)
    initiate_uploads = _sync(AsyncClient.initiate_uploads)
    confirm_uploads = _sync(AsyncClient.confirm_uploads)
    delete_objects = _sync(AsyncClient.delete_objects)
    download_url = _sync(AsyncClient.download_url)
    download = _sync(AsyncClient.download)
    list_staged = _sync(AsyncClient.list_staged)
    iter_staged = _sync_iter(AsyncClient.iter_staged)
    get_staged = _sync(AsyncClient.get_staged)
    preview_staged = _sync(AsyncClient.preview_staged)
    approve_many = _sync(AsyncClient.approve_many)
    claim = _sync(AsyncClient.claim)
    approve = _sync(AsyncClient.approve)
    reject = _sync(AsyncClient.reject)
    get_job = _sync(AsyncClient.get_job)
    wait_job = _sync(AsyncClient.wait_job)
    import_upload_url = _sync(AsyncClient.import_upload_url)
    import_file = _sync(AsyncClient.import_file)
    get_import = _sync(AsyncClient.get_import)
    wait_import = _sync(AsyncClient.wait_import)
    list_imports = _sync(AsyncClient.list_imports)
    iter_imports = _sync_iter(AsyncClient.iter_imports)
    list_datapoints = _sync(AsyncClient.list_datapoints)
    iter_datapoints = _sync_iter(AsyncClient.iter_datapoints)
