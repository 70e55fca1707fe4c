"""The `bmad-app` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from github_app import __version__
from github_app.config import ConfigError, Settings, load_settings
from github_app.db.urls import is_sqlite

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("github_app")


def parse_duration(text: str) -> timedelta:
    """`90m`, `24h`, `3d`: how far back recovery looks."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use a number and s, m, h or d, e.g. 24h")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: float(match.group(1))})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bmad-app",
        description="The BMAD marketplace GitHub App: webhook ingress, story workflow, escrow payouts.",
    )
    parser.add_argument("--version", action="version", version=f"bmad-app {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP server (webhooks, /healthz, /readyz, /metrics) and a worker")
    serve.add_argument("--no-worker", action="store_true", help="serve HTTP only; run `bmad-app worker` elsewhere")
    serve.add_argument(
        "--migrate",
        choices=("auto", "yes", "no"),
        default="auto",
        help="apply migrations first (auto: only on SQLite, the embedded default)",
    )

    sub.add_parser("worker", help="process inbox deliveries (scale out: run several, on PostgreSQL)")

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="migrate to the newest revision (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="migrate down to REVISION (default: one step; `base` empties it)")
    down.add_argument("revision", nargs="?", default="-1")
    db_sub.add_parser("current", help="print the database's revision and the code's")
    db_sub.add_parser(
        "check",
        help="verify, changing nothing, that the marketplace's tables are what the app needs and the "
        "app's migrations are at head (exit 1 if not)",
    )

    dl = sub.add_parser("deliveries", help="inspect and replay webhook deliveries")
    dl_sub = dl.add_subparsers(dest="deliveries_command", required=True, metavar="ACTION")
    ls = dl_sub.add_parser("list", help="recent deliveries")
    ls.add_argument("--state", choices=("pending", "processing", "done", "dead"))
    ls.add_argument("--limit", type=int, default=50)
    show = dl_sub.add_parser("show", help="one delivery, with its payload")
    show.add_argument("delivery_id")
    retry = dl_sub.add_parser("retry", help="process a delivery again now, with fresh attempts")
    retry.add_argument("delivery_id")
    rec = dl_sub.add_parser("recover", help="ask GitHub to redeliver failed deliveries missing from the inbox")
    rec.add_argument(
        "--since",
        type=parse_duration,
        default=timedelta(hours=24),
        help="how far back to look (default 24h; GitHub keeps 3 days)",
    )
    from github_app.escrow.arguments import add_parsers

    add_parsers(sub)
    add_receive_parser(sub)
    add_register_parser(sub)
    add_apikey_parser(sub)
    sub.add_parser(
        "demo",
        help="run the whole product on embedded parts (SQLite, fake GitHub, py-evm, LiteSVM) and show a story's "
        "life from story file to payout",
    )
    return parser


def add_apikey_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("apikey", help="keys of the /api/v1 JSON API")
    keys_sub = keys.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="make a key for a marketplace user; it is printed once")
    create.add_argument("--user", required=True, help="the user's email")
    create.add_argument("--name", required=True, help="what uses the key, e.g. billing-service")
    create.add_argument("--admin", action="store_true", help="may also list and retry webhook deliveries")
    listing = keys_sub.add_parser("list", help="a user's keys (never the keys themselves)")
    listing.add_argument("--user", required=True, help="the user's email")
    revoke = keys_sub.add_parser("revoke", help="delete a key: it is refused from then on")
    revoke.add_argument("key_id")


def add_register_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reg = sub.add_parser(
        "register", help="create the GitHub App from app.yml (GitHub's manifest flow) and write its credentials to .env"
    )
    reg.add_argument("--org", help="create it in this organization (default: your personal account)")
    reg.add_argument("--url", help="the app's public URL; webhook URL/api/github/webhooks (default: webhook off)")
    reg.add_argument("--name", help="the app's name on GitHub (default: app.yml's; names are unique on GitHub)")
    reg.add_argument("--manifest", help="the manifest (default: ./app.yml)")
    reg.add_argument("--env-file", default=".env", help="where the credentials go (default: ./.env)")
    reg.add_argument("--force", action="store_true", help="replace credentials already in the .env file")
    reg.add_argument("--port", type=int, default=0, help="port of the local page on 127.0.0.1 (default: any free one)")
    reg.add_argument("--no-browser", action="store_true", help="print the page's address instead of opening it")


def add_receive_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    receive = sub.add_parser(
        "receive", help="sign a webhook payload file with the configured secret and deliver it (development, support)"
    )
    receive.add_argument("--event", required=True, help="the GitHub event name, e.g. push or pull_request")
    receive.add_argument("payload", help="path to the JSON payload file")
    where = receive.add_mutually_exclusive_group()
    where.add_argument("--url", help="the running app (default: http://HOST:PORT from the configuration)")
    where.add_argument("--local", action="store_true", help="process it in this process, with no server")
    receive.add_argument("--delivery", help="the X-GitHub-Delivery id (default: a new one)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        # Runs on its own embedded parts: the environment's configuration is neither needed nor read.
        return cmd_demo(args)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"bmad-app: {exc}", file=sys.stderr)
        return 2
    from github_app.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    handler: Callable[[Settings, argparse.Namespace], int] = {
        "serve": cmd_serve,
        "worker": cmd_worker,
        "db": cmd_db,
        "deliveries": cmd_deliveries,
        "wallet": cmd_wallet,
        "escrow": cmd_escrow,
        "receive": cmd_receive,
        "register": cmd_register,
        "apikey": cmd_apikey,
    }[args.command]
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130


def cmd_demo(_args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    try:
        import eth_tester  # noqa: F401 - py-evm, the demo's in-process Polygon
    except ImportError:
        print("bmad-app: the demo needs its extra: pip install 'bmad-marketplace-app[demo]'", file=sys.stderr)
        return 2
    from github_app.demo.scenario import run_demo
    from github_app.logs import setup_logging

    # A delivery retried because the demo's own writes held SQLite's lock is the inbox working as
    # designed, not news: only errors are shown.
    setup_logging("ERROR", "text", [])
    workdir = Path(tempfile.mkdtemp(prefix="bmad-app-demo-"))
    try:
        result = asyncio.run(run_demo(workdir, lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not result.ok:
        return 1
    print()
    print("Every step happened. Run it for real: bmad-app register, then bmad-app serve.")
    return 0


def cmd_receive(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from github_app.receive import ReceiveError, receive

    if args.local and is_sqlite(settings.database_url):
        from github_app.db import migrate

        migrate.upgrade(settings.database_url, app_schema=settings.database_app_schema)
    try:
        delivery_id, outcome = receive(
            settings, args.event, Path(args.payload), url=args.url, local=args.local, delivery_id=args.delivery
        )
    except ReceiveError as exc:
        print(f"bmad-app: {exc}", file=sys.stderr)
        return 1
    print(f"{delivery_id}: {outcome.status} {outcome.message}")
    return 0 if outcome.ok else 1


def cmd_register(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from github_app.register import RegisterError, register

    def ready(url: str) -> None:
        print(f"Open {url} and press the button to create the app on {settings.github_url}", flush=True)
        if not args.no_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        registered = asyncio.run(
            register(
                settings,
                org=args.org,
                public_url=args.url,
                env_path=Path(args.env_file),
                force=args.force,
                manifest_path=args.manifest,
                name=args.name,
                port=args.port,
                ready=ready,
            )
        )
    except RegisterError as exc:
        print(f"bmad-app: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print("bmad-app: GitHub did not send the browser back in time; nothing was written", file=sys.stderr)
        return 1
    print(f"Registered {registered.slug} (app id {registered.app_id}); credentials written to {registered.env_path}")
    print(f"Install it on your repositories: {registered.html_url}/installations/new")
    if not args.url:
        print("Its webhook is off: set the webhook URL in the app's settings once the app has a public address.")
    return 0


def cmd_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from github_app.api import keys
    from github_app.db.engine import make_sessionmaker

    async def run(engine: AsyncEngine) -> int:
        async with make_sessionmaker(engine)() as session, session.begin():
            if args.apikey_command == "create":
                key_id, key = await keys.create(session, args.user, args.name, admin=args.admin)
                kind = "admin key" if args.admin else "key"
                print(f"Created {kind} {key_id} for {args.user}. It is shown once; store it now:", file=sys.stderr)
                print(key)
            elif args.apikey_command == "list":
                print(f"{'ID':36} {'ADMIN':5} {'CREATED':19} {'LAST USED':19} NAME")
                for k in await keys.listing(session, args.user):
                    used = f"{k.last_used:%Y-%m-%d %H:%M:%S}" if k.last_used else "never"
                    admin = "yes" if k.admin else "no"
                    print(f"{k.id:36} {admin:5} {k.created_at:%Y-%m-%d %H:%M:%S} {used:19} {k.name}")
            else:
                await keys.revoke(session, args.key_id)
                print(f"{args.key_id}: revoked")
        return 0

    try:
        return _with_engine(settings, run)
    except keys.ApiKeyError as exc:
        print(f"bmad-app: {exc}", file=sys.stderr)
        return 1


def cmd_wallet(settings: Settings, args: argparse.Namespace) -> int:
    from github_app.escrow.commands import cmd_wallet as run

    return run(settings, args)


def cmd_escrow(settings: Settings, args: argparse.Namespace) -> int:
    from github_app.escrow.commands import cmd_escrow as run

    return run(settings, args)


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from github_app.db import migrate

    schema = settings.database_app_schema
    if args.db_command == "upgrade":
        try:
            migrate.upgrade(settings.database_url, args.revision, schema)
        except migrate.SeedSchemaRefused as exc:
            print(f"bmad-app: {exc}", file=sys.stderr)
            return 1
    elif args.db_command == "downgrade":
        migrate.downgrade(settings.database_url, args.revision, schema)
    elif args.db_command == "check":
        return asyncio.run(db_check(settings))
    else:

        async def show() -> None:
            from github_app.db.engine import make_engine

            engine = make_engine(settings.database_url, schema)
            try:
                current = await migrate.current_revision(engine, schema)
            finally:
                await engine.dispose()
            head = migrate.head_revision()
            print(f"database: {current or '(empty)'}")
            print(f"code:     {head}{'' if current == head else '  (run: bmad-app db upgrade)'}")

        asyncio.run(show())
    return 0


async def db_check(settings: Settings) -> int:
    """What `db upgrade` would verify, and where the app's migrations stand; writes nothing."""
    from github_app.db import migrate
    from github_app.db.engine import make_engine

    schema = settings.database_app_schema
    engine = make_engine(settings.database_url, schema)
    try:
        report = await migrate.seed_report(engine)
        current = await migrate.current_revision(engine, schema)
    finally:
        await engine.dispose()
    head = migrate.head_revision()
    ok = True
    if report is None:
        print("seed tables: SQLite, one file the app owns: nothing to verify")
    elif report.state == "absent":
        print("seed tables: none in `public`: `bmad-app db upgrade` will create them with Prisma's DDL")
    elif report.ok:
        print("seed tables: all there, as the app needs them: `bmad-app db upgrade` will attach to them")
    else:
        ok = False
        print("seed tables: NOT as the app needs them; `bmad-app db upgrade` refuses this database:")
    for problem in report.problems if report else []:
        print(f"  problem: {problem}")
    for addition in report.additions if report else []:
        print(f"  fine:    {addition}")
    where = "" if report is None else f" (schema {schema})"
    print(f"app migrations{where}: database {current or '(none)'}, code {head}", end="")
    if current != head:
        ok = False
        print("  (run: bmad-app db upgrade)")
    else:
        print()
    return 0 if ok else 1


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if not is_sqlite(settings.database_url):
        # Before anything imports prometheus_client: the HTTP and worker processes then share their
        # metrics through files, and /metrics shows all of them.
        share_metrics_between_processes()
    from github_app.db import migrate
    from github_app.server import serve

    if args.migrate == "yes" or (args.migrate == "auto" and is_sqlite(settings.database_url)):
        try:
            migrate.upgrade(settings.database_url, app_schema=settings.database_app_schema)
        except migrate.SeedSchemaRefused as exc:
            print(f"bmad-app: {exc}", file=sys.stderr)
            return 1
    missing = settings.missing_github_settings()
    if missing:
        log.warning(
            "GitHub is not fully configured; missing: %s. Webhooks are refused until "
            "GITHUB_WEBHOOK_SECRET is set, and nothing is written to GitHub until the app id and key are.",
            ", ".join(missing),
        )
    serve(settings, with_worker=not args.no_worker)
    return 0


def share_metrics_between_processes() -> None:
    import atexit
    import os
    import shutil
    import tempfile

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="bmad-app-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    from github_app.server import run_worker

    if is_sqlite(settings.database_url):
        log.warning(
            "SQLite has a single writer: run one worker only (with `bmad-app serve --no-worker`); "
            "scale out on PostgreSQL"
        )

    asyncio.run(run_worker(settings))
    return 0


def _with_engine(settings: Settings, body: Callable[[AsyncEngine], Awaitable[int]]) -> int:
    async def run() -> int:
        from github_app.db.engine import make_engine

        engine = make_engine(settings.database_url, settings.database_app_schema)
        try:
            return await body(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from github_app.inbox import store

    if args.deliveries_command == "list":

        async def listing(engine: AsyncEngine) -> int:
            async with engine.connect() as conn:
                rows = await store.list_rows(conn, args.state, args.limit)
            print(f"{'DELIVERY':38} {'EVENT':28} {'STATE':10} {'TRIES':>5} {'RECEIVED':19} REPOSITORY")
            for r in rows:
                event = f"{r.event}.{r.action}" if r.action else r.event
                print(
                    f"{r.delivery_id:38} {event[:28]:28} {r.state:10} {r.attempts:>5} "
                    f"{r.received_at:%Y-%m-%d %H:%M:%S} {r.repository or ''}"
                )
                if r.state == "dead" and r.last_error:
                    print(f"{'':38} last error: {r.last_error.splitlines()[-1][:100]}")
            return 0

        return _with_engine(settings, listing)
    if args.deliveries_command == "show":

        async def showing(engine: AsyncEngine) -> int:
            async with engine.connect() as conn:
                row = await store.get_row(conn, args.delivery_id)
            if row is None:
                print(f"bmad-app: no delivery {args.delivery_id!r} in the inbox", file=sys.stderr)
                return 1
            for key, value in row._mapping.items():
                if key != "payload":
                    print(f"{key:17} {value}")
            print("payload:")
            print(bytes(row.payload).decode("utf-8", errors="replace"))
            return 0

        return _with_engine(settings, showing)
    if args.deliveries_command == "retry":

        async def retrying(engine: AsyncEngine) -> int:
            async with engine.begin() as conn:
                ok = await store.retry(conn, args.delivery_id)
            if not ok:
                print(
                    f"bmad-app: no delivery {args.delivery_id!r} that can be retried "
                    "(unknown, or being processed right now)",
                    file=sys.stderr,
                )
                return 1
            print(f"{args.delivery_id}: queued for processing")
            return 0

        return _with_engine(settings, retrying)
    return cmd_recover(settings, args.since)


def cmd_recover(settings: Settings, since: timedelta) -> int:
    from github_app.inbox.recovery import RecoveryUnavailable, recover

    try:
        report = asyncio.run(recover(settings, since))
    except RecoveryUnavailable as exc:
        print(f"bmad-app: {exc}", file=sys.stderr)
        return 1
    print(
        f"scanned {report.scanned} delivery attempts; {report.failed} failed deliveries, "
        f"{report.already_known} already in the inbox, {report.redelivered} redelivery requested, "
        f"{report.errors} errors"
    )
    for guid in report.redelivered_guids:
        print(f"  redelivery requested: {guid}")
    return 0 if not report.errors else 1
