"""Database engine and sessions: one transaction per request, one per reconcile cycle."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from sqlalchemy import Connection, Engine, create_engine, text
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


class Database:
    """Holds the engine and the session factory.

    Tests bind it to one connection inside an outer transaction
    (``join_transaction_mode="create_savepoint"``) so each test rolls back cleanly.
    """

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self.engine = bind if isinstance(bind, Engine) else bind.engine
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
            pool_recycle=1800,
        )
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends without error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.sessionmaker() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        if isinstance(self.bind, Engine):
            self.bind.dispose()
