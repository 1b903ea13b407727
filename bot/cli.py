"""The `kindred` command line."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import secrets
import sys
from collections.abc import Sequence

from bot.config import Settings


def _settings() -> Settings:
    return Settings()


def _configure_logging(level: int = logging.WARNING) -> None:
    # Logs go to stderr and never carry message text or Telegram ids (see bot.service).
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _chat(args: argparse.Namespace) -> int:
    from bot.console import run_console
    from bot.wiring import build_runtime

    runtime = await build_runtime(_settings(), language=args.lang or "en")
    try:
        return await run_console(runtime.service, user=args.user, language=args.lang)
    finally:
        await runtime.aclose()


async def _run(_args: argparse.Namespace) -> int:
    from bot.telegram.app import create_application, install_signal_handlers, run_polling
    from bot.wiring import build_runtime

    settings = _settings()
    runtime = await build_runtime(settings)
    try:
        application = create_application(settings, runtime.service)
        stop = asyncio.Event()
        install_signal_handlers(stop)
        logging.getLogger(__name__).warning("Kindred is polling %s", settings.telegram_api_base)
        await run_polling(application, stop)
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


async def _bench_nlu(args: argparse.Namespace) -> int:
    from nlu.bench import bench_nlu

    settings = _settings()
    token = settings.rasa_token.get_secret_value() if settings.rasa_token else None
    figures = await bench_nlu(args.rasa_url, token if args.rasa_url else None)
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
    chat.set_defaults(func=_chat)

    run = sub.add_parser("run", help="run the Telegram bot")
    run.set_defaults(func=_run)

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

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bench_nlu = bench_sub.add_parser("nlu", help="parse latency, embedded vs Rasa")
    bench_nlu.add_argument("--rasa-url", default=None)
    bench_nlu.set_defaults(func=_bench_nlu)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kindred` console script."""
    args = build_parser().parse_args(argv)
    _configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(asyncio.run(args.func(args)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
