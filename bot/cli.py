"""The `kindred` command line."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO, cast

from bot.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def _settings() -> Settings:
    return Settings()


def _configure_logging(level: int = logging.WARNING) -> None:
    # Logs go to stderr and never carry message text or Telegram ids (see bot.service).
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _chat(args: argparse.Namespace) -> int:
    from bot.console import run_console
    from bot.wiring import build_runtime

    runtime = await build_runtime(_settings(), language=args.lang or "en")
    stdin = cast(TextIO, _EchoingInput(sys.stdin, sys.stdout)) if args.echo else None
    try:
        return await run_console(runtime.service, user=args.user, language=args.lang, stdin=stdin)
    finally:
        await runtime.aclose()


class _EchoingInput(io.TextIOBase):
    """Standard input that also prints each line read ("> line"): a scripted chat's transcript."""

    def __init__(self, source: TextIO, echo: TextIO) -> None:
        self._source, self._echo = source, echo

    def isatty(self) -> bool:
        return False

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        line = self._source.readline()
        if line.strip():
            self._echo.write(f"> {line.rstrip()}\n\n")
        return line


async def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bot.scheduler import SchedulerSettings, build_followup_scheduler
    from bot.sender import TelegramSender
    from bot.telegram.app import create_application, install_signal_handlers, run_polling
    from bot.wiring import build_runtime

    settings = _settings()
    runtime = await build_runtime(settings)
    try:
        application = create_application(settings, runtime.service)
        # `--role bot`: updates only; the scheduler runs as its own service (docker-compose.yml).
        scheduler = None
        if args.role == "all":
            schedule = replace(SchedulerSettings(), retention_days=settings.retention_days)
            # Follow-ups go out through the same bot, so replies and follow-ups share one limiter.
            scheduler = build_followup_scheduler(runtime, TelegramSender(application.bot), schedule)
        stop = asyncio.Event()
        install_signal_handlers(stop)
        if settings.webhook_url:
            from bot.webhook import run_webhook

            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            await run_webhook(
                settings,
                runtime,
                stop,
                secret_token=secret,
                application=application,
                background=scheduler,
            )
        else:
            log = logging.getLogger(__name__)
            log.warning("Kindred is polling %s", settings.telegram_api_base)
            await run_polling(application, stop, background=scheduler)
    finally:
        await runtime.aclose()
    return 0


async def _db_upgrade(_args: argparse.Namespace) -> int:
    from bot.db.engine import upgrade

    await upgrade(_settings().database_url)
    print("database is up to date")
    return 0


async def _nlu_parse(args: argparse.Namespace) -> int:
    from nlu.pipeline import build_pipeline

    settings = _settings()
    token = settings.rasa_token.get_secret_value() if settings.rasa_token else None
    pipeline = build_pipeline(args.lang, args.backend, settings.rasa_url, token)
    try:
        for line in sys.stdin:
            text = line.rstrip("\n")
            understood = await pipeline.parse(text)
            print(json.dumps(understood.to_json(), ensure_ascii=False), flush=True)
    finally:
        closer = getattr(pipeline.backend, "aclose", None)
        if closer is not None:
            await closer()
    return 0


async def _nlu_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nlu.embedded import EmbeddedInterpreter
    from nlu.evaluate import evaluate_file
    from nlu.safety import SafetyNet

    interpreter = EmbeddedInterpreter.for_language(args.lang)
    safety = SafetyNet.for_language(args.lang)

    def parse(text: str):  # type: ignore[no-untyped-def]
        return safety.check(interpreter.parse_sync(text))

    print(json.dumps(evaluate_file(parse, Path(args.file)), ensure_ascii=False, indent=2))
    return 0


async def _nlu_train(args: argparse.Namespace) -> int:
    from nlu.embedded import EmbeddedInterpreter

    EmbeddedInterpreter.for_language(args.lang)
    print(f"embedded model for '{args.lang}' trained and cached")
    return 0


async def _volunteer_invite(args: argparse.Namespace) -> int:
    from bot.db.engine import create_engine, sessionmaker, upgrade
    from bot.db.models import VolunteerInvite

    settings = _settings()
    if settings.is_sqlite:
        await upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    code = secrets.token_urlsafe(12)
    try:
        async with sessionmaker(engine).begin() as session:
            # Only a hash is stored: a leaked database cannot be used to join the desk.
            digest = hashlib.sha256(code.encode()).hexdigest()
            session.add(VolunteerInvite(code_hash=digest, role=args.role))
    finally:
        await engine.dispose()
    print(f"One-time {args.role} invite. Send it to the bot in a private chat as /volunteer CODE:")
    print(code)
    return 0


async def _scheduler(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bot.scheduler_worker import run_scheduler_only, scheduler_settings
    from bot.telegram.app import install_signal_handlers

    settings = _settings()
    stop = asyncio.Event()
    install_signal_handlers(stop)
    schedule = replace(scheduler_settings(args), retention_days=settings.retention_days)
    if not settings.webhook_url:
        await run_scheduler_only(settings, schedule, stop)
        return 0
    # Production (webhook mode): also /healthz and /metrics on KINDRED_HTTP_PORT for compose.
    from bot.webhook import run_ops_server
    from bot.wiring import build_runtime

    runtime = await build_runtime(settings)
    try:
        await asyncio.gather(
            run_scheduler_only(settings, schedule, stop), run_ops_server(settings, runtime, stop)
        )
    finally:
        await runtime.aclose()
    return 0


async def _engine(settings: Settings) -> AsyncEngine:
    """An engine on the configured database (SQLite is migrated on the spot, as elsewhere)."""
    from bot.db.engine import create_engine, upgrade

    if settings.is_sqlite:
        await upgrade(settings.database_url)
    return create_engine(settings.database_url)


async def _programme_create(args: argparse.Namespace) -> int:
    from bot.db.engine import sessionmaker
    from bot.programmes import create_programme, deep_link, resolve_bot_username

    settings = _settings()
    username = args.bot_username or await resolve_bot_username(settings)
    engine = await _engine(settings)
    try:
        async with sessionmaker(engine).begin() as session:
            programme = await create_programme(session, args.name, args.kind)
    finally:
        await engine.dispose()
    print(f"Programme '{programme.name}' ({programme.kind}). Share this link:")
    print(deep_link(username, programme.code))
    return 0


async def _programme_list(_args: argparse.Namespace) -> int:
    from bot.db.engine import sessionmaker
    from bot.programmes import list_programmes

    engine = await _engine(_settings())
    try:
        async with sessionmaker(engine)() as session:
            for programme in await list_programmes(session):
                print(f"{programme.code}\t{programme.kind}\t{programme.name}")
    finally:
        await engine.dispose()
    return 0


async def _stats(args: argparse.Namespace) -> int:
    from bot.db.engine import sessionmaker
    from bot.stats import programme_stats, render_table

    engine = await _engine(_settings())
    try:
        async with sessionmaker(engine)() as session:
            rows = await programme_stats(session)
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], ensure_ascii=False, indent=2))
    else:
        print(render_table(rows))
    return 0


async def _keys_generate(_args: argparse.Namespace) -> int:
    from bot.keys import generate_key

    print(generate_key())
    return 0


async def _keys_rotate(args: argparse.Namespace) -> int:
    from bot.keys import rotate_all
    from bot.wiring import build_identity

    settings = _settings()
    engine = await _engine(settings)
    try:
        report = await rotate_all(engine, build_identity(settings), args.batch_size)
    finally:
        await engine.dispose()
    print(json.dumps(report.as_dict(), indent=2))
    return 1 if sum(report.unreadable.values()) else 0


async def _retention_run(args: argparse.Namespace) -> int:
    from bot.db.engine import sessionmaker
    from bot.retention import erase_inactive

    settings = _settings()
    engine = await _engine(settings)
    try:
        report = await erase_inactive(sessionmaker(engine), args.days or settings.retention_days)
    finally:
        await engine.dispose()
    print(json.dumps({"people_erased": report.people, "rows": report.rows}))
    return 0


async def _desk_stats(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from bot.db.engine import sessionmaker
    from bot.desk.store import claim_stats
    from bot.repository import utcnow

    engine = await _engine(_settings())
    try:
        async with sessionmaker(engine)() as session:
            figures = await claim_stats(session, utcnow() - timedelta(days=args.days))
    finally:
        await engine.dispose()
    print(json.dumps({"days": args.days, **figures}))
    return 0


async def _bench_delivery(args: argparse.Namespace) -> int:
    from bot.bench_delivery import bench_delivery

    figures = await bench_delivery(args.followups, args.db)
    print(json.dumps(figures))
    return 0


async def _bench_pipeline(args: argparse.Namespace) -> int:
    from bot.bench_pipeline import run_from_args

    print(json.dumps(await run_from_args(args)))
    return 0


async def _bench_nlu(args: argparse.Namespace) -> int:
    from nlu.bench import bench_nlu

    settings = _settings()
    token = settings.rasa_token.get_secret_value() if settings.rasa_token else None
    pid = args.rasa_pid or (int(os.environ["RASA_PID"]) if os.environ.get("RASA_PID") else None)
    figures = await bench_nlu(args.rasa_url, token if args.rasa_url else None, rasa_pid=pid)
    print(json.dumps(figures))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """All subcommands."""
    parser = argparse.ArgumentParser(prog="kindred", description="Kindred recovery companion")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="talk to Kindred in the console")
    chat.add_argument("--user", default="console", help="who you are (a local name, hashed)")
    chat.add_argument("--lang", default=None, help="language code, e.g. en")
    chat.add_argument("--echo", action="store_true", help="print each line read (transcripts)")
    chat.set_defaults(func=_chat)

    run = sub.add_parser("run", help="run the Telegram bot")
    run.add_argument(
        "--role",
        choices=("all", "bot"),
        default="all",
        help="all: updates and follow-ups (one process); bot: updates only",
    )
    run.set_defaults(func=_run)

    sched = sub.add_parser("scheduler", help="deliver follow-ups only (no polling)")
    sched.add_argument("--interval", type=float, default=2.0, help="seconds between looks")
    sched.add_argument("--lease", type=float, default=30.0, help="seconds before a takeover")
    sched.add_argument("--no-housekeeping", action="store_true")
    sched.set_defaults(func=_scheduler)

    db = sub.add_parser("db", help="database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=_db_upgrade)

    nlu = sub.add_parser("nlu", help="intent layer")
    nlu_sub = nlu.add_subparsers(dest="nlu_command", required=True)
    parse = nlu_sub.add_parser("parse", help="one message per stdin line -> JSON per line")
    parse.add_argument("--backend", choices=("embedded", "rasa"), default="embedded")
    parse.add_argument("--lang", default="en")
    parse.set_defaults(func=_nlu_parse)
    evaluate = nlu_sub.add_parser("evaluate", help="precision, recall, F1 on a Rasa NLU YAML")
    evaluate.add_argument("file")
    evaluate.add_argument("--lang", default="en")
    evaluate.set_defaults(func=_nlu_evaluate)
    train = nlu_sub.add_parser("train", help="train and cache the embedded model")
    train.add_argument("--lang", default="en")
    train.set_defaults(func=_nlu_train)

    volunteer = sub.add_parser("volunteer", help="volunteer desk")
    vol_sub = volunteer.add_subparsers(dest="volunteer_command", required=True)
    invite = vol_sub.add_parser("invite", help="create a one-time invite code")
    invite.add_argument("--role", choices=("volunteer", "coordinator"), default="volunteer")
    invite.set_defaults(func=_volunteer_invite)

    programme = sub.add_parser("programme", help="referring programmes and their deep links")
    prog_sub = programme.add_subparsers(dest="programme_command", required=True)
    create = prog_sub.add_parser("create", help="create a programme and print its link")
    create.add_argument("name")
    create.add_argument(
        "--kind", choices=("school", "campus", "workplace", "community"), default="community"
    )
    create.add_argument("--bot-username", default=None, help="default: asked of Telegram")
    create.set_defaults(func=_programme_create)
    prog_sub.add_parser("list", help="list programmes").set_defaults(func=_programme_list)

    stats = sub.add_parser("stats", help="anonymised figures per programme")
    stats.add_argument("--json", action="store_true", help="JSON instead of a table")
    stats.set_defaults(func=_stats)

    keys = sub.add_parser("keys", help="encryption keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("generate", help="print a new key").set_defaults(func=_keys_generate)
    rotate = keys_sub.add_parser("rotate", help="re-encrypt everything with the newest key")
    rotate.add_argument("--batch-size", type=int, default=500)
    rotate.set_defaults(func=_keys_rotate)

    retention = sub.add_parser("retention", help="erase people inactive for too long")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    sweep = retention_sub.add_parser("run", help="erase them now")
    sweep.add_argument("--days", type=int, default=None, help="default: KINDRED_RETENTION_DAYS")
    sweep.set_defaults(func=_retention_run)

    desk = sub.add_parser("desk", help="volunteer desk")
    desk_sub = desk.add_subparsers(dest="desk_command", required=True)
    desk_stats = desk_sub.add_parser("stats", help="time to claim, ratings, reports")
    desk_stats.add_argument("--days", type=int, default=7)
    desk_stats.set_defaults(func=_desk_stats)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bench_nlu = bench_sub.add_parser("nlu", help="parse latency, embedded vs Rasa")
    bench_nlu.add_argument("--rasa-url", default=None)
    bench_nlu.add_argument("--rasa-pid", type=int, default=None, help="for Rasa's peak memory")
    bench_nlu.set_defaults(func=_bench_nlu)
    pipeline = bench_sub.add_parser("pipeline", help="full pipeline against a bare PTB echo floor")
    pipeline.add_argument("--latency-ms", type=int, default=0, help="Bot API round trip to add")
    pipeline.add_argument("--db", default=None, help="database URL (default: a scratch SQLite)")
    pipeline.add_argument("--people", type=int, default=200)
    pipeline.add_argument("--messages", type=int, default=10, help="messages per person")
    pipeline.add_argument("--stored-people", type=int, default=0)
    pipeline.add_argument("--telegram-rate", type=float, default=0, help="send cap per s (0: off)")
    pipeline.add_argument("--profile", action="store_true", help="cProfile the burst")
    pipeline.set_defaults(func=_bench_pipeline)
    delivery = bench_sub.add_parser(
        "delivery", help="N follow-ups due at once, to the Bot API fake"
    )
    delivery.add_argument("--followups", type=int, default=10000)
    delivery.add_argument("--db", default=None, help="PostgreSQL URL (default: a SQLite file)")
    delivery.set_defaults(func=_bench_delivery)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kindred` console script."""
    args = build_parser().parse_args(argv)
    if args.command in ("run", "scheduler"):
        from bot.logging_setup import configure_logging

        # A service: JSON lines, identifiers and message text scrubbed (bot.logging_setup).
        configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    else:
        _configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(asyncio.run(args.func(args)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
