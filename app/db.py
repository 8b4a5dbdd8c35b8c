"""Database engine and sessions: one transaction per request, one per reconcile cycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, LiteralString, Protocol, cast

import orjson
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolTimeout
from sqlalchemy import Connection, Engine, QueuePool, create_engine, text
from sqlalchemy.orm import Session, sessionmaker


def json_dumps(value: object) -> str:
    # orjson is several times faster than json for the specs and manifests we store.
    return orjson.dumps(value).decode()


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine with fast JSON (de)serialization; every engine of the app comes from here."""
    return create_engine(
        url,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
        **kwargs,
    )


POOL_RECYCLE_SECONDS = 1800
Params = Mapping[str, Any] | Sequence[Any]
Row = tuple[Any, ...]


class Driver(Protocol):
    """What the hot path needs of a driver connection: a statement, a transaction."""

    async def fetchone(self, query: LiteralString, params: Params) -> Row | None: ...

    async def fetchall(self, query: LiteralString, params: Params) -> list[Row]: ...

    def transaction(self) -> AbstractAsyncContextManager[None]: ...


class AsyncDriver:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def fetchone(self, query: LiteralString, params: Params) -> Row | None:
        cursor = await self.conn.execute(query, params)
        return await cursor.fetchone()

    async def fetchall(self, query: LiteralString, params: Params) -> list[Row]:
        cursor = await self.conn.execute(query, params)
        return await cursor.fetchall()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            yield


class BlockingDriver:
    """A test's connection, inside its outer transaction, behind the same interface."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    async def fetchone(self, query: LiteralString, params: Params) -> Row | None:
        return self.conn.execute(query, params).fetchone()

    async def fetchall(self, query: LiteralString, params: Params) -> list[Row]:
        return self.conn.execute(query, params).fetchall()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        with self.conn.transaction():
            yield


class DriverPool:
    """Autocommit psycopg connections for the event loop: the submission hot path's pool.

    A submission is one statement. Through a SQLAlchemy session in a worker thread it cost
    ~0.5 ms of CPU more than the statement itself (the thread hop, BEGIN and COMMIT round
    trips, the ORM's bookkeeping); here it is the statement. It behaves like the engine's pool,
    whose size, timeout and recycle age it copies: a server that cannot be reached fails the
    request at once (503), a busy pool makes it wait ``timeout`` seconds at most (503), and a
    connection that broke is dropped when it comes back.
    """

    def __init__(self, conninfo: str, *, size: int, timeout: float, recycle: float) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout
        self.recycle = recycle
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def like(cls, engine: Engine) -> DriverPool:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        # Connection options only: SQLAlchemy also passes Python objects (its adapters map).
        options: dict[str, Any] = {
            k: v for k, v in cparams.items() if isinstance(v, str | int | float)
        }
        pool = engine.pool
        return cls(
            make_conninfo(*cargs, **options),
            size=pool.size() if isinstance(pool, QueuePool) else 5,
            timeout=pool.timeout() if isinstance(pool, QueuePool) else 30.0,
            recycle=POOL_RECYCLE_SECONDS,
        )

    def _semaphore(self) -> asyncio.Semaphore:
        # asyncio primitives belong to one loop; a new loop (a new TestClient) gets new ones.
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.size), loop
        return self._slots

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        slots = self._semaphore()
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self.timeout)
            except TimeoutError:
                raise PoolTimeout(f"no database connection free after {self.timeout:g} s") from None
        else:
            await slots.acquire()
        try:
            conn, born = await self._take()
            try:
                yield conn
            finally:
                await self._give(conn, born)
        finally:
            slots.release()

    async def _take(self) -> tuple[psycopg.AsyncConnection[Any], float]:
        while self._idle:
            conn, born = self._idle.pop()
            if time.monotonic() - born < self.recycle and not conn.closed:
                return conn, born
            await conn.close()
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        return conn, time.monotonic()

    async def _give(self, conn: psycopg.AsyncConnection[Any], born: float) -> None:
        if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.close()
        else:
            self._idle.append((conn, born))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()
        self._slots = self._loop = None


class Database:
    """Holds the engine and the session factory.

    Tests bind it to one connection inside an outer transaction
    (``join_transaction_mode="create_savepoint"``) so each test rolls back cleanly.
    """

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self.engine = bind if isinstance(bind, Engine) else bind.engine
        self.driver_pool = DriverPool.like(bind) if isinstance(bind, Engine) else None
        self.sessionmaker = sessionmaker(
            bind=bind,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> Database:
        engine = make_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No pre-ping: it costs a round trip per request. A dropped connection fails its
            # request with a 503 and SQLAlchemy then replaces the whole pool by itself.
            pool_pre_ping=False,
            pool_recycle=POOL_RECYCLE_SECONDS,
        )
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends without error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Driver]:
        """A driver connection without SQLAlchemy, for the submission hot path (see
        :class:`DriverPool`). Bound to a connection (tests), it works in a savepoint of that
        connection's transaction, so a test still rolls everything back."""
        if self.driver_pool is not None:
            async with self.driver_pool.connection() as connection:
                yield AsyncDriver(connection)
            return
        bound = cast(Connection, self.bind)
        blocking = cast(psycopg.Connection[Any], bound.connection.driver_connection)
        with blocking.transaction():
            yield BlockingDriver(blocking)

    async def aclose(self) -> None:
        """Close the idle driver connections (at the end of the app's lifespan)."""
        if self.driver_pool is not None:
            await self.driver_pool.close()

    def ping(self) -> None:
        with self.sessionmaker() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        if isinstance(self.bind, Engine):
            self.bind.dispose()
