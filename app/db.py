"""The database: psycopg's async connection pool, for request handling and the reconciler alike.

Each aggregate has one repository that owns its SQL (``app/*/repository.py``); its functions take
a connection from here. Connections are in autocommit, so a single statement costs one round trip;
statements that must hold together run in :meth:`Database.transaction`.

Code that runs in a plain thread (the reconciler, the CLI, tests) reaches the same repositories
through :class:`BlockingDatabase`: a pool on an event loop of its own, in a portal thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import psycopg
from anyio.from_thread import BlockingPortal, start_blocking_portal
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

Conn = psycopg.AsyncConnection[Any]
P = ParamSpec("P")
T = TypeVar("T")

# orjson is several times faster than json for the specs and manifests we store and read, and
# writes dataclasses and UUIDs as they are (no dataclasses.asdict, which deep-copies each UUID).
set_json_dumps(orjson.dumps)
set_json_loads(orjson.loads)

CONNECTION_MAX_LIFETIME = 1800.0


def conninfo(url: str) -> str:
    """A libpq URL from the settings' ``postgresql+psycopg://`` form (SQLAlchemy's, for Alembic)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Database:
    """A pool of autocommit connections.

    A request waits at most ``timeout`` seconds for a connection: then (server unreachable, or
    every connection busy) it fails with :class:`psycopg_pool.PoolTimeout`, answered as 503 with
    ``Retry-After``. A connection that broke is dropped when it comes back to the pool.
    """

    def __init__(self, url: str, *, size: int = 10, timeout: float = 5.0) -> None:
        self.url = url
        self.size = size
        self.timeout = timeout
        self._pool: AsyncConnectionPool | None = None

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool

    async def open(self) -> None:
        """Open a new pool (an app's lifespan may run more than once, as in tests). It does not
        wait for a first connection: a server that is away makes requests answer 503 until it
        is back, rather than the process failing to start."""
        self._pool = AsyncConnectionPool(
            conninfo(self.url),
            # Times in UTC whatever the server's zone, so that answers read the same everywhere.
            kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
            min_size=1,
            max_size=self.size,
            timeout=self.timeout,
            max_lifetime=CONNECTION_MAX_LIFETIME,
            open=False,
            name="runplane",
        )
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn


class BlockingDatabase:
    """A :class:`Database` for threads that are not an event loop's: calls run on the loop of
    a portal thread of its own (anyio's blocking portal), and block until they are done."""

    def __init__(self, url: str, *, size: int = 2, timeout: float = 5.0) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.db = Database(url, size=size, timeout=timeout)
        self.portal.call(self.db.open)

    def run(
        self, fn: Callable[Concatenate[Conn, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(conn, *args, **kwargs)`` on a connection of the pool, in autocommit."""

        async def call() -> T:
            async with self.db.connection() as conn:
                return await fn(conn, *args, **kwargs)

        return self.portal.call(call)

    def close(self) -> None:
        try:
            self.portal.call(self.db.close)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> BlockingDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
