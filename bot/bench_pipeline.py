"""`kindred bench pipeline`: the whole Telegram pipeline under load, against a bare PTB floor.

Four processes, so that no part steals the measured bot's event loop (2 cores here):

* the Bot API fake (``python -m tests.botapi_fake``), answering after ``latency_ms``;
* this process, the orchestrator: it injects the load through the fake's control API and
  checks every person's replies;
* one bot process per measurement (``python -m bot.bench_pipeline runner``): first a bare
  python-telegram-bot echo bot (the floor), then Kindred exactly as ``kindred run`` builds it
  (Settings -> build_runtime -> create_application), on a scratch database;
* the database server (PostgreSQL), when ``db_url`` names one.

Each bot is measured twice: a burst (every person's whole conversation queued at once:
throughput) and a paced phase at half that throughput (handling latency, the figure a person
feels; a saturated burst only measures queueing). Latency runs from the moment getUpdates
returned an update to the moment the bot's last reply for it was answered by the API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import logging
import os
import re
import secrets
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE_MODULE = "tests.botapi_fake"
PEOPLE_BASE = 700_000_000  # Telegram ids of simulated people: far from any real test id
WARMUP_PEOPLE = 6
WAIT_TIMEOUT_S = 900.0
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Conversations: what simulated people send. Buttons carry the payloads the flows put on them.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One thing a person does: types text (or a command) or presses a button."""

    text: str = ""
    button: str | None = None


def _t(text: str) -> Step:
    return Step(text=text)


def _b(payload: str) -> Step:
    return Step(button=payload)


TEMPLATES: tuple[tuple[Step, ...], ...] = (
    # A craving at night: consent, the craving check-in with its buttons, then a daily check-in.
    (
        _t("/start"),
        _b("onb:yes"),
        _t("i really want a drink right now, its bad"),
        _b("crv:lvl:7"),
        _b("crv:trg:stress"),
        _b("crv:trg:done"),
        _b("crv:ok"),
        _t("thanks"),
        _t("/checkin"),
        _b("chk:mood:3"),
        _b("chk:crv:2"),
        _b("chk:used:no"),
        _b("chk:note:skip"),
        _t("I had a good day today"),
        _t("/help"),
    ),
    # A daily check-in first, with a typed note, then low mood and coping.
    (
        _t("/start"),
        _b("onb:yes"),
        _t("/checkin"),
        _b("chk:mood:4"),
        _b("chk:crv:0"),
        _b("chk:used:no"),
        _t("slept well and went for a walk"),
        _t("thanks"),
        _t("I'm feeling pretty low and stressed tonight"),
        _t("how do I cope with stress"),
        _t("/help"),
        _t("hello"),
        _t("is this a bot?"),
        _t("thanks"),
        _t("bye"),
    ),
    # No consent, questions, a meeting search, a lapse.
    (
        _t("/start"),
        _b("onb:more"),
        _b("onb:no"),
        _t("is this anonymous?"),
        _t("where can I find an AA meeting"),
        _b("country:United Kingdom"),
        _t("/coping"),
        _b("cop:card:surf"),
        _t("I slipped last night and had a few beers"),
        _b("lps:trg:skip"),
        _b("lps:fine"),
        _t("thanks"),
        _t("bye"),
        _t("/help"),
        _t("hello"),
    ),
)
FILLER = (_t("thanks"), _t("/help"), _t("hello"))


def script(template: int, length: int) -> list[Step]:
    """The first `length` steps of a template (small talk after its end)."""
    steps = list(TEMPLATES[template % len(TEMPLATES)][:length])
    while len(steps) < length:
        steps.append(FILLER[len(steps) % len(FILLER)])
    return steps


@dataclass(frozen=True)
class Person:
    """A simulated person: Telegram id and which conversation they have."""

    user_id: int
    template: int


def cohort(first_id: int, count: int) -> list[Person]:
    """`count` people with consecutive ids, templates in rotation."""
    return [Person(first_id + i, i % len(TEMPLATES)) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# The Bot API fake, as a subprocess with a control API.
# ---------------------------------------------------------------------------------------------


class FakeProcess:
    """`python -m tests.botapi_fake` on a free port, driven over its /_fake/ control API."""

    def __init__(self, latency_ms: float, token: str, log_dir: Path) -> None:
        """Remember the settings; start() launches it."""
        self.latency_ms = latency_ms
        self.token = token
        self.log_path = log_dir / "fake.log"
        self.base_url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Launch the fake and wait for its banner."""
        if not (REPO_ROOT / "tests" / "botapi_fake.py").exists():
            raise RuntimeError("the benchmark needs the repository checkout (tests/botapi_fake.py)")
        port = _free_port()
        with self.log_path.open("wb") as errors:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                FAKE_MODULE,
                "--port",
                str(port),
                "--token",
                self.token,
                "--latency-ms",
                str(self.latency_ms),
                cwd=REPO_ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
            )
        assert self._process.stdout is not None
        banner = await asyncio.wait_for(self._process.stdout.readline(), 60)
        if not banner:
            raise RuntimeError(f"the Bot API fake did not start: {_tail(self.log_path)}")
        self.base_url = f"http://127.0.0.1:{port}"
        # A few connections: a round's injections overlap, rounds (a person's steps) do not.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16))

    async def control(self, action: str, **kwargs: Any) -> Any:
        """POST /_fake/<action> with JSON kwargs; the method's result."""
        assert self._http is not None
        async with self._http.post(f"{self.base_url}/_fake/{action}", json=kwargs) as response:
            body = await response.json()
        if not body.get("ok"):
            raise RuntimeError(f"fake control {action} failed: {body}")
        return body.get("result")

    async def get(self, what: str) -> Any:
        """GET /_fake/<what> (sent, stats)."""
        assert self._http is not None
        async with self._http.get(f"{self.base_url}/_fake/{what}") as response:
            return await response.json()

    async def inject(self, person: Person, step: Step, token: str) -> None:
        """Queue one update from a person: a message or a button press."""
        if step.button is not None:
            await self.control(
                "inject_callback",
                user_id=person.user_id,
                message_id=1,
                data=step.button,
                token=token,
            )
        else:
            await self.control(
                "inject_message", user_id=person.user_id, text=step.text, token=token
            )

    async def stop(self) -> None:
        """Stop the fake (SIGTERM, then kill)."""
        if self._http is not None:
            await self._http.close()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# ---------------------------------------------------------------------------------------------
# The measured bot, as a subprocess speaking a line protocol on stdin/stdout.
# ---------------------------------------------------------------------------------------------


class RunnerProcess:
    """One bot process (`runner` below): POLL, UNPOLL, WAIT n, REPORT, QUIT."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        """Remember the command line; start() launches it."""
        self.args = args
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> dict[str, Any]:
        """Launch the runner and wait until the bot is initialized (not polling yet)."""
        with self.log_path.open("wb") as errors:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.bench_pipeline",
                "runner",
                *self.args,
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                limit=1 << 26,  # REPORT is one long JSON line
            )
        return await self._answer(300)

    async def send(self, command: str, timeout: float = WAIT_TIMEOUT_S) -> dict[str, Any]:  # noqa: ASYNC109
        """Send one command line and return the runner's JSON answer."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command.encode() + b"\n")
        await self._process.stdin.drain()
        return await self._answer(timeout)

    async def _answer(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self._process is not None and self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the bot runner died: {_tail(self.log_path)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> dict[str, Any]:
        """QUIT, and the runner's last words (peak memory)."""
        assert self._process is not None
        try:
            final = await self.send("QUIT", timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                if self._process.returncode is None:
                    await asyncio.wait_for(self._process.wait(), 30)
        return final

    async def kill(self) -> None:
        """Make sure the process is gone (after a failure)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


# ---------------------------------------------------------------------------------------------
# Measurements.
# ---------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase of one bot produced."""

    updates: int
    updates_per_s: float
    p50_ms: float
    p99_ms: float
    service_p50_ms: float
    service_p99_ms: float
    wait_p99_ms: float
    order_violations: int
    errors: int
    cpu_ms_per_update: float
    error_samples: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(report: dict[str, Any]) -> Phase:
    """Throughput, latency and per-person order from a runner's records of one phase."""
    records = report["records"]  # [update_id, person, t_fetch, t_start, t_done]
    fetched = [r[2] for r in records if r[2] is not None]
    first = min(fetched) if fetched else 0.0
    last = max((r[4] for r in records), default=first)
    latencies = [(r[4] - r[2]) * 1000 for r in records if r[2] is not None]
    service = [(r[4] - r[3]) * 1000 for r in records if r[3] is not None]
    # Fetched -> handler started: time spent queued behind other updates (or the same person's).
    waits = [(r[3] - r[2]) * 1000 for r in records if r[2] is not None and r[3] is not None]
    by_person: dict[int, list[list[Any]]] = defaultdict(list)
    for record in records:
        by_person[record[1]].append(record)
    violations = 0
    for handled in by_person.values():
        handled.sort(key=lambda r: r[3] if r[3] is not None else r[4])
        for before, after in itertools.pairwise(handled):
            # In order: ascending update ids, and the next one starts after the last one ended.
            if after[0] < before[0] or (after[3] is not None and after[3] < before[4]):
                violations += 1
    span = last - first
    return Phase(
        updates=len(records),
        updates_per_s=len(records) / span if span > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        service_p50_ms=percentile(service, 0.50),
        service_p99_ms=percentile(service, 0.99),
        wait_p99_ms=percentile(waits, 0.99),
        order_violations=violations,
        errors=int(report["errors"]),
        cpu_ms_per_update=1000 * float(report.get("cpu_s", 0.0)) / len(records) if records else 0,
        error_samples=list(report.get("error_samples", [])),
    )


@dataclass
class Transcript:
    """Each person's replies against what they should have been."""

    people: int = 0
    in_order: bool = True
    wrong_people: int = 0
    lost: int = 0
    duplicates: int = 0
    sends: int = 0
    example: str = ""


def compare_transcripts(
    sent: Iterable[dict[str, Any]], expected: dict[int, list[str | None]]
) -> Transcript:
    """Compare the texts each person received (in the fake's order) with the expected ones."""
    received: dict[int, list[str | None]] = defaultdict(list)
    for item in sent:
        received[int(item["chat_id"])].append(item.get("raw_text"))
    result = Transcript(people=len(expected))
    for user_id, wanted in expected.items():
        got = received.get(user_id, [])
        result.sends += len(got)
        if got == wanted:
            continue
        result.in_order = False
        result.wrong_people += 1
        result.lost += max(0, len(wanted) - len(got))
        result.duplicates += max(0, len(got) - len(wanted))
        if not result.example:
            result.example = f"person {user_id}: expected {len(wanted)} replies, got {len(got)}"
    return result


# ---------------------------------------------------------------------------------------------
# Databases: a scratch database per run, never the one named (it may hold real people).
# ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_database(db_url: str | None, work: Path) -> AsyncIterator[str]:
    """A fresh, migrated database of the kind `db_url` names; PostgreSQL ones are dropped after."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from bot.db.engine import create_engine, upgrade

    if db_url is None or db_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{work / 'bench.sqlite3'}"
        await upgrade(url)
        yield url
        return
    parsed = make_url(db_url)
    name = f"kindred_bench_{secrets.token_hex(5)}"
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = parsed.set(database=name).render_as_string(hide_password=False)
        try:
            await upgrade(url)
            yield url
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def store_people(db_url: str, count: int, chunk: int = 5000) -> float:
    """Bulk-insert `count` onboarded people (users + conversation state); seconds taken."""
    from sqlalchemy import insert, text

    from bot.db.engine import create_engine
    from bot.db.models import ConversationState, User

    started = time.monotonic()
    engine = create_engine(db_url)
    try:
        for offset in range(0, count, chunk):
            ids = [secrets.token_hex(32) for _ in range(min(chunk, count - offset))]
            async with engine.begin() as conn:
                await conn.execute(
                    insert(User),
                    [
                        {
                            "id": pid,
                            "channel": "telegram",
                            "language": "en",
                            "onboarded": True,
                            "active": True,
                            "consent_checkins": True,
                        }
                        for pid in ids
                    ],
                )
                await conn.execute(
                    insert(ConversationState),
                    [{"user_id": pid, "data": {}} for pid in ids],
                )
        if count and not db_url.startswith("sqlite"):
            async with engine.connect() as conn:
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return time.monotonic() - started


async def expected_replies(people: Sequence[Person], length: int) -> dict[int, list[str | None]]:
    """What each person must receive, from the same service run alone, one step at a time."""
    from bot.config import Settings
    from bot.inbound import Inbound
    from bot.wiring import build_runtime
    from flows.engine import EventKind

    transcripts: dict[int, list[str | None]] = {}
    with tempfile.TemporaryDirectory(prefix="kindred-bench-ref-") as work:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{work}/reference.sqlite3",
            secret_key=SecretStr(secrets.token_urlsafe(32)),
            rasa_url=None,
        )
        runtime = await build_runtime(settings, migrate=True)
        try:
            for template in range(len(TEMPLATES)):
                texts: list[str | None] = []
                for step in script(template, length):
                    command = _command(step.text)
                    if step.button is not None:
                        kind, payload = EventKind.BUTTON, step.button
                    elif command is not None:
                        kind, payload = EventKind.COMMAND, None
                    else:
                        kind, payload = EventKind.TEXT, None
                    inbound = Inbound(
                        channel="telegram",
                        external_user=f"reference-{template}",
                        chat_id=str(template),
                        kind=kind,
                        text=step.text,
                        command=command[0] if command else None,
                        args=command[1] if command else "",
                        payload=payload,
                        language_code="en",
                    )
                    handled = await runtime.service.handle(inbound)
                    texts.extend(_sent_texts(handled.replies))
                transcripts[template] = texts
        finally:
            await runtime.aclose()
    return {person.user_id: transcripts[person.template] for person in people}


def _command(text: str) -> tuple[str, str] | None:
    """('start', args) for a command, as bot.telegram.updates reads it."""
    match = re.match(r"^/([A-Za-z0-9_]{1,32})(?:@\w+)?(?=\s|$)", text)
    if match is None:
        return None
    return match.group(1).lower(), text[match.end() :].strip()


def _sent_texts(replies: Iterable[Any]) -> list[str | None]:
    """The text (or caption) of each Bot API send that bot.telegram.app.send_replies makes."""
    from bot.rendering import split_for_telegram

    texts: list[str | None] = []
    for reply in replies:
        if reply.document is not None:
            texts.append(reply.text[:1024])
            continue
        if reply.image is not None:
            if len(reply.text) <= 1024:
                texts.append(reply.text)
                continue
            texts.append(None)
        texts.extend(split_for_telegram(reply.text))
    return texts


def echo_expected(people: Sequence[Person], length: int) -> dict[int, list[str | None]]:
    """What the echo floor must send back: each text or button payload, in order."""
    return {
        p.user_id: [
            s.button if s.button is not None else s.text for s in script(p.template, length)
        ]
        for p in people
    }


# ---------------------------------------------------------------------------------------------
# The orchestrator.
# ---------------------------------------------------------------------------------------------


async def inject_rounds(
    fake: FakeProcess, people: Sequence[Person], length: int, token: str, concurrency: int = 16
) -> int:
    """Queue every person's conversation, interleaved: step 1 of everyone, then step 2, ..."""
    gate = asyncio.Semaphore(concurrency)
    scripts = {p.user_id: script(p.template, length) for p in people}

    async def one(person: Person, step: Step) -> None:
        async with gate:
            await fake.inject(person, step, token)

    for index in range(length):
        # Rounds run one after another, so a person's messages keep their order in the queue.
        await asyncio.gather(*(one(p, scripts[p.user_id][index]) for p in people))
    return len(people) * length


async def inject_paced(
    fake: FakeProcess, people: Sequence[Person], length: int, token: str, rate: float
) -> int:
    """Inject the same interleaved conversations at `rate` updates per second."""
    scripts = {p.user_id: script(p.template, length) for p in people}
    order = [(p, scripts[p.user_id][index]) for index in range(length) for p in people]
    started = time.monotonic()
    for sent, (person, step) in enumerate(order):
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await fake.inject(person, step, token)
    return len(order)


@dataclass
class BotResult:
    """Burst and paced figures of one bot, with its transcripts and memory."""

    burst: Phase
    paced: Phase
    transcript: Transcript
    peak_rss_mb: float
    paced_rate: float
    settings: dict[str, Any]
    group_commit: dict[str, Any] | None = None
    inbox: dict[str, Any] | None = None


async def measure_bot(
    mode: str,
    fake: FakeProcess,
    db_url: str | None,
    people: int,
    length: int,
    work: Path,
    telegram_rate: float,
    profile: bool,
) -> BotResult:
    """Run one bot process through warm-up, burst and paced phases."""
    token = f"{secrets.randbelow(10**9) + 10**9}:BENCH-{mode}"
    await fake.control("add_bot", token=token)
    args = [
        "--mode",
        mode,
        "--api-base",
        fake.base_url,
        "--token",
        token,
        "--telegram-rate",
        str(telegram_rate),
    ]
    if db_url is not None:
        args += ["--db", db_url]
    runner = RunnerProcess(args, work / f"runner-{mode}.log")
    hello = await runner.start()
    try:
        warm = cohort(PEOPLE_BASE, WARMUP_PEOPLE)
        burst_people = cohort(PEOPLE_BASE + 10_000, people)
        paced_people = cohort(PEOPLE_BASE + 20_000, max(1, people // 2))
        expected: dict[int, list[str | None]]
        if mode == "echo":
            expected = echo_expected(burst_people + paced_people, length)
        else:
            expected = await expected_replies(burst_people + paced_people, length)
        # Warm-up: caches, connection pools, the NLU's first calls; not measured.
        total = await inject_rounds(fake, warm, length, token)
        await runner.send("POLL")
        await _wait(runner, total)
        await runner.send("REPORT")
        await runner.send("UNPOLL")
        await fake.control("clear_records")
        # Burst: everything queued before the bot polls.
        total += await inject_rounds(fake, burst_people, length, token)
        if profile:
            await runner.send("PROFILE")
        await runner.send("POLL")
        await _wait(runner, total)
        burst = summarize(await runner.send("REPORT"))
        if profile:
            await runner.send(f"PROFILED {Path.cwd() / f'kindred-bench-{mode}.pstats'}")
        # Paced: half the burst throughput, people typing in turn.
        rate = max(1.0, burst.updates_per_s / 2)
        total += await inject_paced(fake, paced_people, length, token, rate)
        await _wait(runner, total)
        last_report = await runner.send("REPORT")
        paced = summarize(last_report)
        sent = await fake.get("sent")
        transcript = compare_transcripts((s for s in sent if s["token"] == token), expected)
        final = await runner.stop()
    except BaseException:
        await runner.kill()
        raise
    return BotResult(
        burst=burst,
        paced=paced,
        transcript=transcript,
        peak_rss_mb=float(final["peak_rss_mb"]),
        paced_rate=rate,
        settings=hello,
        group_commit=last_report.get("group_commit"),
        inbox=last_report.get("inbox"),
    )


async def _wait(runner: RunnerProcess, total: int) -> None:
    answer = await runner.send(f"WAIT {total}")
    if answer.get("done", 0) < total:
        raise RuntimeError(f"the bot handled {answer.get('done')} of {total} updates in time")


async def bench_pipeline(
    latency_ms: int = 0,
    db_url: str | None = None,
    people: int = 200,
    messages_per_person: int = 10,
    stored_people: int = 0,
    *,
    telegram_rate: float = 0,
    profile: bool = False,
) -> dict[str, Any]:
    """Kindred's full pipeline against the bare PTB echo floor on the same Bot API fake.

    `telegram_rate` is the AIORateLimiter's overall messages per second (0: off). Telegram
    itself caps a bot at about 30 per second; the benchmark measures what the bot could do
    if that cap were not there, so that the bot is never the bottleneck.
    """
    if people < 1 or messages_per_person < 1:
        raise ValueError("people and messages_per_person must be at least 1")
    from sqlalchemy.engine import make_url

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kindred-bench-") as tmp:
        work = Path(tmp)
        fake = FakeProcess(latency_ms, f"{secrets.randbelow(10**9) + 1}:BENCH-FAKE", work)
        await fake.start()
        try:
            floor = await measure_bot(
                "echo", fake, None, people, messages_per_person, work, telegram_rate, False
            )
            async with scratch_database(db_url, work) as url:
                store_s = await store_people(url, stored_people)
                kindred = await measure_bot(
                    "pipeline",
                    fake,
                    url,
                    people,
                    messages_per_person,
                    work,
                    telegram_rate,
                    profile,
                )
        finally:
            await fake.stop()
    backend = make_url(db_url).get_backend_name() if db_url else "sqlite"
    ratio = (
        kindred.burst.updates_per_s / floor.burst.updates_per_s if floor.burst.updates_per_s else 0
    )
    return {
        "updates_per_s": round(kindred.burst.updates_per_s, 1),
        "p50_ms": round(kindred.paced.p50_ms, 1),
        "p99_ms": round(kindred.paced.p99_ms, 1),
        "floor_updates_per_s": round(floor.burst.updates_per_s, 1),
        "ratio": round(ratio, 3),
        "peak_rss_mb": round(kindred.peak_rss_mb, 1),
        "in_order": kindred.transcript.in_order
        and not kindred.burst.order_violations
        and not kindred.paced.order_violations,
        "lost": kindred.transcript.lost,
        "duplicates": kindred.transcript.duplicates,
        "errors": kindred.burst.errors + kindred.paced.errors,
        "error_samples": (kindred.burst.error_samples + kindred.paced.error_samples)[:5],
        "wrong_people": kindred.transcript.wrong_people,
        "mismatch_example": kindred.transcript.example,
        "sends": kindred.transcript.sends,
        "burst_p50_ms": round(kindred.burst.p50_ms, 1),
        "burst_p99_ms": round(kindred.burst.p99_ms, 1),
        "service_p50_ms": round(kindred.paced.service_p50_ms, 1),
        "service_p99_ms": round(kindred.paced.service_p99_ms, 1),
        "wait_p99_ms": round(kindred.paced.wait_p99_ms, 1),
        "paced_rate_per_s": round(kindred.paced_rate, 1),
        "paced_updates": kindred.paced.updates,
        "cpu_ms_per_update": round(kindred.burst.cpu_ms_per_update, 2),
        # What one core could sustain for the bot process alone (robust to a busy machine).
        "cpu_bound_updates_per_s": round(1000 / kindred.burst.cpu_ms_per_update, 1)
        if kindred.burst.cpu_ms_per_update
        else None,
        "floor_cpu_ms_per_update": round(floor.burst.cpu_ms_per_update, 2),
        "floor_p50_ms": round(floor.paced.p50_ms, 1),
        "floor_p99_ms": round(floor.paced.p99_ms, 1),
        "floor_in_order": floor.transcript.in_order and not floor.burst.order_violations,
        "floor_peak_rss_mb": round(floor.peak_rss_mb, 1),
        "store_people_s": round(store_s, 1),
        "latency_ms": latency_ms,
        "db": backend,
        "people": people,
        "messages_per_person": messages_per_person,
        "updates": kindred.burst.updates,
        "stored_people": stored_people,
        "telegram_rate": telegram_rate,
        "request": kindred.settings.get("request"),
        "max_concurrent_updates": kindred.settings.get("max_concurrent_updates"),
        "connection_pool_size": kindred.settings.get("connection_pool_size"),
        # Shared transactions over the whole run (PostgreSQL): how many updates each carried.
        "group_commit": kindred.group_commit,
        # Updates written before acknowledging and deleted once handled (a crash loses none).
        "inbox": kindred.inbox,
        "cpus": os.cpu_count(),
        # Other work on the machine skews every figure: the 1-minute load before and after.
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


# ---------------------------------------------------------------------------------------------
# The runner: one measured bot, in its own process.
# ---------------------------------------------------------------------------------------------

_UPDATE_ID = re.compile(rb'"update_id":\s*(\d+)')


class _ErrorCounter(logging.Handler):
    """Counts log records at ERROR and above (PTB's error handler and Kindred log there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Count; keep a few messages (they never carry message text)."""
        self.count += 1
        if len(self.samples) < 5:
            self.samples.append(f"{record.name}: {record.getMessage()}"[:200])


def _cpu_seconds() -> float:
    """CPU time this process used so far (user + system): robust to other load on the machine."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _runner(args: argparse.Namespace) -> None:
    """Build the bot, then obey the orchestrator's commands on stdin."""
    from telegram import Update
    from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, TypeHandler

    from bot.config import Settings
    from bot.telegram.aiohttp_request import AiohttpRequest
    from bot.telegram.ordering import PerPersonUpdateProcessor

    counter = _ErrorCounter()
    logging.getLogger().addHandler(counter)
    fetched: dict[int, float] = {}
    started: dict[int, float] = {}
    records: list[list[Any]] = []
    progress = asyncio.Event()

    class StampingRequest(AiohttpRequest):
        """The getUpdates request, noting when each update arrived."""

        async def do_request(self, *a: Any, **kw: Any) -> tuple[int, bytes]:
            """Stamp the update ids of a successful getUpdates answer."""
            status, body = await super().do_request(*a, **kw)
            if status == 200:
                now = time.monotonic()
                for match in _UPDATE_ID.finditer(body):
                    fetched.setdefault(int(match.group(1)), now)
            return status, body

    settings = Settings(
        database_url=args.db or "sqlite+aiosqlite:///:memory:",
        secret_key=SecretStr(secrets.token_urlsafe(32)),
        telegram_bot_token=SecretStr(args.token),
        telegram_api_base=args.api_base,
        rasa_url=None,
    )
    limiter = AIORateLimiter(overall_max_rate=args.telegram_rate, max_retries=3)
    updates_request = StampingRequest(connection_pool_size=2, read_timeout=40.0)
    runtime = None
    application: Application[Any, Any, Any, Any, Any, Any]
    if args.mode == "pipeline":
        from bot.telegram.app import create_application
        from bot.wiring import build_runtime

        runtime = await build_runtime(settings, migrate=False)
        application = create_application(
            settings,
            runtime.service,
            get_updates_request=updates_request,
            rate_limiter=limiter,
        )
    else:
        application = (
            ApplicationBuilder()
            .token(args.token)
            .base_url(f"{args.api_base}/bot")
            .base_file_url(f"{args.api_base}/file/bot")
            .request(
                AiohttpRequest(
                    connection_pool_size=settings.connection_pool_size,
                    connect_timeout=10.0,
                    read_timeout=10.0,
                    write_timeout=10.0,
                    pool_timeout=10.0,
                )
            )
            .get_updates_request(updates_request)
            .concurrent_updates(PerPersonUpdateProcessor(settings.max_concurrent_updates))
            .rate_limiter(limiter)
            .build()
        )
        application.add_handler(TypeHandler(Update, _echo))

    async def stamp_start(update: Update, _context: Any) -> None:
        started[update.update_id] = time.monotonic()

    async def stamp_done(update: Update, _context: Any) -> None:
        person = update.effective_user.id if update.effective_user else 0
        uid = update.update_id
        records.append(
            [uid, person, fetched.pop(uid, None), started.pop(uid, None), time.monotonic()]
        )
        progress.set()

    application.add_handler(TypeHandler(Update, stamp_start), group=-1)
    application.add_handler(TypeHandler(Update, stamp_done), group=1)

    done = 0
    profiler: cProfile.Profile | None = None
    cpu_mark = _cpu_seconds()
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    if args.mode == "pipeline":
        from bot.telegram.app import freeze_startup_objects

        freeze_startup_objects()  # as run_polling does
    await application.start()
    updater = application.updater
    assert updater is not None
    request_name = type(application.bot.request).__name__
    _say(
        {
            "ready": True,
            "request": request_name,
            "max_concurrent_updates": settings.max_concurrent_updates,
            "connection_pool_size": settings.connection_pool_size,
        }
    )
    try:
        while True:
            line = (await reader.readline()).decode().strip()
            command, _, argument = line.partition(" ")
            if command in ("", "QUIT"):
                break
            if command == "POLL":
                await updater.start_polling(
                    timeout=30, allowed_updates=Update.ALL_TYPES, drop_pending_updates=False
                )
                _say({"polling": True})
            elif command == "UNPOLL":
                await updater.stop()
                _say({"polling": False})
            elif command == "WAIT":
                target = int(argument)
                deadline = time.monotonic() + WAIT_TIMEOUT_S
                while done + len(records) < target and time.monotonic() < deadline:
                    progress.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(progress.wait(), 1.0)
                _say({"done": done + len(records)})
            elif command == "PROFILE":
                # CPU time, not wall time: other processes on the machine do not count.
                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
                _say({"profiling": True})
            elif command == "PROFILED" and profiler is not None:
                profiler.disable()
                profiler.dump_stats(argument)
                _say({"profile": argument})
            elif command == "REPORT":
                batch, records[:] = list(records), []
                done += len(batch)
                errors, counter.count = counter.count, 0
                samples, counter.samples = counter.samples, []
                cpu, cpu_mark = _cpu_seconds() - cpu_mark, _cpu_seconds()
                _say(
                    {
                        "records": batch,
                        "errors": errors,
                        "error_samples": samples,
                        "cpu_s": cpu,
                        "group_commit": _group_figures(runtime),
                        "inbox": _inbox_figures(application),
                    }
                )
    finally:
        if updater.running:
            await updater.stop()
        await application.stop()
        inbox = getattr(application, "inbox", None)
        if inbox is not None:
            await inbox.aclose()
        await application.shutdown()
        if runtime is not None:
            await runtime.aclose()
    _say({"peak_rss_mb": _peak_rss_mb()})


def _group_figures(runtime: Any) -> dict[str, Any] | None:
    """The service's group-commit counters so far (None: not PostgreSQL, or the floor)."""
    group = runtime.service.group_commit if runtime is not None else None
    if group is None:
        return None
    mean = group.batched_updates / group.batches if group.batches else 0.0
    return {
        "batches": group.batches,
        "updates": group.batched_updates,
        "mean_updates_per_batch": round(mean, 2),
        "fallbacks": group.fallbacks,
    }


def _inbox_figures(application: Any) -> dict[str, Any] | None:
    """The inbox's counters so far (None: the floor, which has none)."""
    inbox = getattr(application, "inbox", None)
    return asdict(inbox.counters) if inbox is not None else None


async def _echo(update: Any, context: Any) -> None:
    """The floor: answer a press and echo its data; echo a text."""
    if update.callback_query is not None:
        await update.callback_query.answer()
        await context.bot.send_message(update.effective_chat.id, update.callback_query.data)
    elif update.message is not None and update.message.text is not None:
        await context.bot.send_message(update.effective_chat.id, update.message.text)


def _say(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bot.bench_pipeline [options]`, or `... runner ...` (one measured bot)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if arguments[:1] == ["runner"]:
        runner = argparse.ArgumentParser(prog="python -m bot.bench_pipeline runner")
        runner.add_argument("--mode", choices=("pipeline", "echo"), required=True)
        runner.add_argument("--api-base", required=True)
        runner.add_argument("--token", required=True)
        runner.add_argument("--db", default=None)
        runner.add_argument("--telegram-rate", type=float, default=0)
        asyncio.run(_runner(runner.parse_args(arguments[1:])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bot.bench_pipeline")
    add_bench_arguments(parser)
    print(json.dumps(asyncio.run(run_from_args(parser.parse_args(arguments)))))
    return 0


def cancel_on_sigterm() -> None:
    """SIGTERM cancels the running task, so scratch databases and child processes are cleaned."""
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `kindred bench pipeline`."""
    parser.add_argument("--latency-ms", type=int, default=0, help="Bot API round trip to add")
    parser.add_argument("--db", default=None, help="database URL (default: a scratch SQLite)")
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10, help="messages per person")
    parser.add_argument("--stored-people", type=int, default=0)
    parser.add_argument("--telegram-rate", type=float, default=0, help="send cap per s (0: off)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile (CPU time) the burst into ./*.pstats"
    )


async def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """bench_pipeline() with parsed command-line options."""
    cancel_on_sigterm()
    return await bench_pipeline(
        latency_ms=args.latency_ms,
        db_url=args.db,
        people=args.people,
        messages_per_person=args.messages,
        stored_people=args.stored_people,
        telegram_rate=args.telegram_rate,
        profile=args.profile,
    )


if __name__ == "__main__":
    sys.exit(main())
