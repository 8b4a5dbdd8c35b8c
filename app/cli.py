"""The ``runplane`` command: serve | migrate | reconcile | openapi."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from app.config import DEV_ADMIN_TOKEN, Settings, get_settings

log = logging.getLogger("runplane")


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


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = get_settings()
    _prepare_database(settings, migrate=False)
    if args.no_reconciler:
        os.environ["RUNPLANE_RUN_RECONCILER"] = "false"
    if not settings.admin_token:
        log.warning(
            "RUNPLANE_ADMIN_TOKEN is not set; using the development token %r", DEV_ADMIN_TOKEN
        )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=args.access_log,
        timeout_graceful_shutdown=20,
    )


def cmd_migrate(args: argparse.Namespace) -> None:
    url = _prepare_database(get_settings(), migrate=True)
    from sqlalchemy.engine import make_url

    print(f"migrated {make_url(url).render_as_string(hide_password=True)} to head")


def cmd_openapi(args: argparse.Namespace) -> None:
    from app.main import create_app
    from app.openapi import openapi_json

    text = openapi_json(create_app(Settings(database_url=None)))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


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

    openapi = sub.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--out", help="file to write (default: stdout)")
    openapi.set_defaults(func=cmd_openapi)

    args = parser.parse_args(argv)
    from app.observability import configure_logging

    settings = get_settings()
    configure_logging(level=settings.log_level, json_logs=settings.log_json)
    args.func(args)


if __name__ == "__main__":
    main()
