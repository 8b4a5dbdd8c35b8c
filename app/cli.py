"""The ``runplane`` command: serve | migrate | reconcile | openapi | token."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from app.config import DEV_ADMIN_TOKEN, Settings, get_settings
from app.errors import AppError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("runplane")


def _exit_on_signals() -> None:
    """Make SIGTERM and SIGHUP end the process the way Ctrl-C does: through the interpreter's
    exit, so that atexit hooks run (the embedded server's stop among them).

    Python's default for both is to die on the spot. A stop the user asked for is a clean
    exit (status 0, as uvicorn's multi-worker mode and ``runplane reconcile`` answer too).
    SIGHUP becomes SIGTERM, so that whoever handles SIGTERM at the moment (uvicorn, while it
    serves: a graceful shutdown) handles a hang-up too.
    """

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    def hang_up(signum: int, frame: FrameType | None) -> None:
        signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, hang_up)


def _database_url(settings: Settings) -> tuple[str, bool]:
    """The URL to use, and whether it is the embedded server (which we migrate ourselves)."""
    if settings.database_url:
        return settings.database_url, False
    from app import embedded

    server = embedded.start(settings.data_dir)
    return embedded.ensure_database(server, "runplane"), True


def _prepare_database(settings: Settings, *, migrate: bool) -> str:
    from sqlalchemy import create_engine

    from app import migrations

    url, is_embedded = _database_url(settings)
    engine = create_engine(url)
    try:
        if migrate or is_embedded:
            migrations.upgrade(engine)
        elif not migrations.is_at_head(engine):
            current = migrations.current_revision(engine)
            sys.exit(
                f"runplane: the database schema is at {current or 'nothing'}, not at "
                f"{migrations.head_revision()}. Run `runplane migrate` first."
            )
    finally:
        engine.dispose()
    # Worker processes and the reconciler read it from the environment.
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    return url


def serve_app() -> FastAPI:
    """The app factory of ``runplane serve``.

    A worker process (``--workers N``) also stops when its parent is gone: the parent handles
    signals and stops the workers, but a parent killed outright (SIGKILL, the OOM killer) would
    leave them serving on its port, on an embedded server that nobody would stop.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:

        def stop_with_parent() -> None:
            parent.join()
            log.warning("the parent process %s is gone; stopping", parent.pid)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=stop_with_parent, name="parent-watch", daemon=True).start()
    from app.main import create_app

    return create_app()


def _serve_workers(options: dict[str, Any]) -> None:
    """uvicorn's supervisor of worker processes, where SIGHUP stops as SIGTERM does."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        # uvicorn restarts the workers on SIGHUP (gunicorn's reload). SIGHUP is also what a
        # closing terminal sends, and Runplane's answer to it is to stop, embedded server and all.
        def handle_hup(self) -> None:
            log.info("Received SIGHUP, exiting.")
            self.should_exit.set()

    config = uvicorn.Config(**options)
    Supervisor(config, sockets=[config.bind_socket()]).run()


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = get_settings()
    _prepare_database(settings, migrate=False)
    if args.no_reconciler:
        os.environ["RUNPLANE_RUN_RECONCILER"] = "false"
        get_settings.cache_clear()
    if not settings.admin_token:
        log.warning(
            "RUNPLANE_ADMIN_TOKEN is not set; using the development token %r", DEV_ADMIN_TOKEN
        )
    options: dict[str, Any] = {
        "app": "app.cli:serve_app",
        "factory": True,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_level": settings.log_level.lower(),
        "access_log": args.access_log,
        "timeout_graceful_shutdown": 20,
        # Runplane reads no client address (audit records principals, rate limits are per
        # principal), so X-Forwarded-* need no parsing; and no `server` header to advertise.
        "proxy_headers": False,
        "server_header": False,
    }
    if args.workers > 1:
        _serve_workers(options)
    else:
        uvicorn.run(**options)


def cmd_migrate(args: argparse.Namespace) -> None:
    url = _prepare_database(get_settings(), migrate=True)
    from sqlalchemy.engine import make_url

    print(f"migrated {make_url(url).render_as_string(hide_password=True)} to head")


def cmd_reconcile(args: argparse.Namespace) -> None:
    from app.reconciler.loop import run_reconciler

    _prepare_database(get_settings(), migrate=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    run_reconciler(get_settings(), stop)


def cmd_openapi(args: argparse.Namespace) -> None:
    from app.main import create_app
    from app.openapi import openapi_json

    text = openapi_json(create_app(Settings(database_url=None), reconcile=False))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


def cmd_token(args: argparse.Namespace) -> None:
    """Mint or revoke an API token straight in the database (bootstrapping, break-glass)."""
    import asyncio

    settings = get_settings()
    _prepare_database(settings, migrate=False)
    url = get_settings().database_url
    assert url
    try:
        token, out = asyncio.run(
            _token(args, url, actor=f"cli:{os.environ.get('USER', 'unknown')}")
        )
    except AppError as exc:
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors or [])
        sys.exit(f"runplane: {exc.detail}" + (f" ({problems})" if problems else ""))
    if out:
        # The secret alone on stdout, so that `$(runplane token create ...)` captures it.
        print(out)
        print(f"created token {token.id} ({token.role}); it is shown only now", file=sys.stderr)
    else:
        print(f"revoked token {token.id}", file=sys.stderr)


async def _token(args: argparse.Namespace, url: str, *, actor: str) -> tuple[Any, str]:
    from datetime import UTC, datetime, timedelta

    from app.audit import repository as audit
    from app.auth import tokens
    from app.db import Database

    db = Database(url, size=1)
    await db.open()
    try:
        async with db.transaction() as conn:
            if args.token_command == "create":
                expires = (
                    datetime.now(UTC) + timedelta(days=args.expires_in_days)
                    if args.expires_in_days
                    else None
                )
                token, secret = await tokens.create(
                    conn,
                    name=args.name,
                    role=args.role,
                    projects=args.project or [],
                    expires_at=expires,
                    created_by=actor,
                )
                method, route, out = "POST", "runplane token create", secret
            else:
                token = await tokens.revoke(conn, args.id)
                method, route, out = "DELETE", "runplane token revoke", ""
            await audit.insert(
                conn,
                [
                    {
                        "actor": actor,
                        "actor_id": "cli",
                        "role": "admin",
                        "method": method,
                        "route": route,
                        "target": str(token.id),
                        "status": 200,
                        "dry_run": False,
                    }
                ],
            )
    finally:
        await db.close()
    return token, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="runplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API (and run the reconciler)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument("--no-reconciler", action="store_true", help="do not run the reconciler")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to head")
    migrate.set_defaults(func=cmd_migrate)

    reconcile = sub.add_parser("reconcile", help="run the reconciler alone")
    reconcile.set_defaults(func=cmd_reconcile)

    openapi = sub.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--out", help="file to write (default: stdout)")
    openapi.set_defaults(func=cmd_openapi)

    token = sub.add_parser("token", help="create or revoke API tokens (no server needed)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a new token's secret")
    create.add_argument("--name", required=True, help="unique among live tokens")
    create.add_argument("--role", required=True, choices=["admin", "researcher", "viewer"])
    create.add_argument(
        "--project", action="append", help="a project the token may see (repeatable)"
    )
    create.add_argument("--expires-in-days", type=int, help="default: never expires")
    revoke = token_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("--id", required=True, type=uuid.UUID)
    token.set_defaults(func=cmd_token)

    args = parser.parse_args(argv)
    _exit_on_signals()
    from app.observability import configure_logging

    settings = get_settings()
    configure_logging(level=settings.log_level, json_logs=settings.log_json)
    args.func(args)


if __name__ == "__main__":
    main()
