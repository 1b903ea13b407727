"""AiohttpRequest against the Bot API fake, with a real telegram.Bot: same results, same errors."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.request import BaseRequest, HTTPXRequest

from bot.telegram.aiohttp_request import AiohttpRequest, RequestNotSent
from tests.botapi_fake import FakeBotAPI

TOKEN = "5550001:TEST-aiohttp"
CHAT = 4242
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def make_bot(api: FakeBotAPI, request: BaseRequest) -> Bot:
    """A real telegram.Bot pointed at the fake, using `request` for everything."""
    return Bot(
        TOKEN,
        base_url=f"{api.base_url}/bot",
        base_file_url=f"{api.base_url}/file/bot",
        request=request,
        get_updates_request=request,
    )


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    """A fresh fake with the test chat known."""
    async with FakeBotAPI(token=TOKEN) as fake:
        fake.add_chat(CHAT)
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    """An initialized Bot over AiohttpRequest with its defaults."""
    async with make_bot(api, AiohttpRequest()) as tg:
        yield tg


async def test_get_me(bot: Bot, api: FakeBotAPI) -> None:
    me = await bot.get_me()
    assert me.id == 5550001 and me.is_bot
    assert api.calls[-1].method == "getMe"


async def test_send_message_with_keyboard(bot: Bot, api: FakeBotAPI) -> None:
    markup = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("Yes", callback_data="onb:yes")],
            [InlineKeyboardButton("Ü ✓", callback_data="x")],
        ]
    )
    message = await bot.send_message(
        CHAT, "<b>Héllo</b> 👋", parse_mode="HTML", reply_markup=markup
    )
    assert message.text == "Héllo 👋"
    sent = api.sent(CHAT)[-1]
    assert sent.raw_text == "<b>Héllo</b> 👋"
    assert api.buttons(sent) == [[("Yes", "onb:yes")], [("Ü ✓", "x")]]


async def test_send_photo_is_multipart(bot: Bot, api: FakeBotAPI) -> None:
    message = await bot.send_photo(CHAT, PNG, caption="chart", filename="progress.png")
    assert message.photo and message.caption == "chart"
    sent = api.sent(CHAT, "sendPhoto")[-1]
    assert sent.text == "chart"
    # The uploaded bytes arrived intact: download them back through getFile.
    file = await bot.get_file(message.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == PNG


async def test_send_document_from_bytes_and_file_handle(bot: Bot, api: FakeBotAPI) -> None:
    payload = b'{"checkins": []}\n' * 1000
    first = await bot.send_document(CHAT, payload, filename="kindred-export.json", caption="yours")
    assert first.document is not None and first.document.file_name == "kindred-export.json"
    second = await bot.send_document(CHAT, io.BytesIO(payload), filename="again.json")
    assert second.document is not None and second.document.file_name == "again.json"
    file = await bot.get_file(first.document.file_id)
    assert bytes(await file.download_as_bytearray()) == payload
    assert [s.method for s in api.sent(CHAT)] == ["sendDocument", "sendDocument"]


async def _error_of(request: BaseRequest, status: int) -> BaseException:
    """The exception a sendMessage raises when a fresh fake keeps answering `status`."""
    async with FakeBotAPI(token=TOKEN) as api:
        api.add_chat(CHAT)
        api.fail_next("sendMessage", status, times=5, retry_after=3)
        async with make_bot(api, request) as tg:
            try:
                await tg.send_message(CHAT, "hello")
            except Exception as exc:
                return exc
    raise AssertionError(f"no error for HTTP {status}")


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, BadRequest), (403, Forbidden), (429, RetryAfter), (500, NetworkError)],
)
async def test_errors_match_httpx_request(status: int, expected: type[Exception]) -> None:
    ours = await _error_of(AiohttpRequest(), status)
    theirs = await _error_of(HTTPXRequest(), status)
    assert type(ours) is type(theirs) is expected
    assert str(ours) == str(theirs)
    if isinstance(ours, RetryAfter) and isinstance(theirs, RetryAfter):
        assert ours.retry_after == theirs.retry_after


async def test_a_5xx_burst_can_be_retried_and_is_delivered_once(api: FakeBotAPI) -> None:
    api.fail_next("sendMessage", 502, times=1)
    api.fail_next("sendMessage", 503, times=1)
    request = AiohttpRequest(server_error_retries=2, retry_backoff=0.01)
    async with make_bot(api, request) as tg:
        message = await tg.send_message(CHAT, "after the burst")
    assert message.text == "after the burst"
    assert [s.text for s in api.sent(CHAT)] == ["after the burst"]
    assert [c.status for c in api.calls if c.method == "sendMessage"] == [502, 503, 200]


async def test_no_retries_by_default(bot: Bot, api: FakeBotAPI) -> None:
    # The sender owns the retry policy; the transport only reports what happened.
    api.fail_next("sendMessage", 502, times=1)
    with pytest.raises(NetworkError, match="Bad Gateway") as caught:
        await bot.send_message(CHAT, "x")
    assert not isinstance(caught.value.__cause__, RequestNotSent)
    assert api.sent(CHAT) == []


async def test_read_timeout_is_timed_out(api: FakeBotAPI) -> None:
    async with make_bot(api, AiohttpRequest(read_timeout=0.05)) as tg:
        api.latency_ms = 400  # after Bot.initialize(), which calls getMe itself
        started = time.monotonic()
        with pytest.raises(TimedOut) as caught:
            await tg.get_me()
        assert time.monotonic() - started < 0.35
        # Written, answer lost: maybe delivered, so not marked as safe to retry.
        assert not isinstance(caught.value.__cause__, RequestNotSent)
        # A per-call timeout wins over the default, as with HTTPXRequest.
        me = await tg.get_me(read_timeout=2)
        assert me.is_bot


async def test_full_pool_is_a_pool_timeout(api: FakeBotAPI) -> None:
    request = AiohttpRequest(connection_pool_size=1, pool_timeout=0.05)
    async with make_bot(api, request) as tg:
        api.latency_ms = 300
        first = asyncio.create_task(tg.send_message(CHAT, "first"))
        await asyncio.sleep(0.05)
        with pytest.raises(TimedOut, match="Pool timeout") as caught:
            await tg.send_message(CHAT, "second")
        await first
    assert isinstance(caught.value.__cause__, RequestNotSent)
    assert [s.text for s in api.sent(CHAT)] == ["first"]


async def test_unreachable_server_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest(server_error_retries=1, retry_backoff=0.01)
    tg = Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=request)
    async with request:
        with pytest.raises(NetworkError, match=r"aiohttp\.ClientConnectorError") as caught:
            await tg.get_me()
    assert not isinstance(caught.value, TimedOut)
    # Nothing was sent: a sender may retry this one without risking a duplicate.
    assert isinstance(caught.value.__cause__, RequestNotSent)


async def test_concurrent_requests_overlap(api: FakeBotAPI) -> None:
    api.latency_ms = 80
    async with make_bot(api, AiohttpRequest(connection_pool_size=64)) as tg:
        started = time.monotonic()
        await asyncio.gather(*(tg.send_message(CHAT, f"m{i}") for i in range(50)))
        elapsed = time.monotonic() - started
    # Sequentially this is 50 x 80 ms = 4 s; overlapping requests finish in a few round trips.
    assert elapsed < 1.0, elapsed
    assert sorted(s.text or "" for s in api.sent(CHAT)) == sorted(f"m{i}" for i in range(50))


async def test_lifecycle() -> None:
    request = AiohttpRequest()
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1:9/botX/getMe", "POST")
    await request.initialize()
    await request.initialize()  # PTB initializes a shared request once per bot user of it
    assert request.is_initialized
    assert request.read_timeout == 5.0
    await request.shutdown()
    await request.shutdown()
    assert not request.is_initialized
    with pytest.raises(ValueError, match="pool"):
        AiohttpRequest(connection_pool_size=0)
