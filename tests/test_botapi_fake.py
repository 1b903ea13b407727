"""The Bot API fake, exercised with the real python-telegram-bot over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.botapi_fake import FakeBotAPI

TOKEN = "123:TEST"
USER = 4242
OTHER_USER = 4343
FORUM = -1001234567890


@pytest.fixture(autouse=True)
def _timedelta_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to PTB's timedelta periods: otherwise building RetryAfter emits a deprecation
    warning, which filterwarnings=error turns into a failure."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


def make_bot(api: FakeBotAPI, token: str = TOKEN) -> Bot:
    """A real PTB Bot pointed at the fake."""
    return Bot(token, base_url=f"{api.base_url}/bot", base_file_url=f"{api.base_url}/file/bot")


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    """A running fake with one known private chat."""
    async with FakeBotAPI(token=TOKEN) as fake:
        fake.add_chat(USER)
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    """An initialised PTB Bot talking to the fake (shut down before the fake stops)."""
    async with make_bot(api) as tg_bot:
        yield tg_bot


def two_buttons() -> InlineKeyboardMarkup:
    """A small inline keyboard."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Yes", callback_data="yes"),
                InlineKeyboardButton("No", callback_data="no"),
            ],
            [InlineKeyboardButton("Site", url="https://example.org")],
        ]
    )


async def test_get_me(api: FakeBotAPI, bot: Bot) -> None:
    """getMe answers with the registered bot user."""
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123, "kindred_test_bot", True)
    assert api.calls[0].method == "getMe" and api.calls[0].status == 200


async def test_injected_message_arrives_via_get_updates_and_offset_confirms(
    api: FakeBotAPI, bot: Bot
) -> None:
    """An injected message is a well-formed Update; offset confirms it."""
    queued = api.inject_message(USER, "/start@kindred_test_bot hello", username="sam")
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [queued["update_id"]] == [1]
    message = updates[0].message
    assert message is not None and message.from_user is not None
    assert message.text == "/start@kindred_test_bot hello"
    assert message.chat.type == "private" and message.chat.id == USER
    assert message.from_user.username == "sam" and message.from_user.language_code == "en"
    assert message.entities[0].type == "bot_command" and message.entities[0].length == 23
    # Without an offset the update is delivered again; offset=2 confirms it.
    assert len(await bot.get_updates()) == 1
    assert await bot.get_updates(offset=2) == ()
    assert api.pending_updates() == []


async def test_allowed_updates_and_limit(api: FakeBotAPI, bot: Bot) -> None:
    """limit caps a batch; allowed_updates filters update types."""
    api.inject_message(USER, "one")
    api.inject_callback(USER, 1, "data")
    api.inject_message(USER, "two")
    updates = await bot.get_updates(limit=1)
    assert [u.update_id for u in updates] == [1]
    updates = await bot.get_updates(allowed_updates=["callback_query"])
    assert [u.update_id for u in updates] == [2]
    assert updates[0].callback_query is not None
    assert updates[0].callback_query.data == "data"


async def test_send_message_with_inline_keyboard_round_trips(api: FakeBotAPI, bot: Bot) -> None:
    """A keyboard survives the round trip and is recorded in sent()."""
    markup = two_buttons()
    sent = await bot.send_message(
        USER, "<b>Pick</b> one &amp; go", parse_mode="HTML", reply_markup=markup
    )
    assert sent.text == "Pick one & go"
    assert sent.entities[0].type == "bold" and sent.text_html == "<b>Pick</b> one &amp; go"
    assert sent.reply_markup == markup
    assert sent.from_user is not None and sent.from_user.id == 123
    [item] = api.sent(USER)
    assert item.method == "sendMessage" and item.message_id == sent.message_id
    assert item.text == "Pick one & go" and item.raw_text == "<b>Pick</b> one &amp; go"
    assert item.parse_mode == "HTML" and item.params["chat_id"] == USER
    assert api.buttons(item) == [[("Yes", "yes"), ("No", "no")], [("Site", None)]]
    assert api.last_text(USER) == "Pick one & go"
    assert item["method"] == item.get("method") == "sendMessage"


async def test_invalid_html_is_a_bad_request(bot: Bot) -> None:
    """Malformed or non-Telegram HTML fails; every supported tag passes."""
    bad = [
        "line<br>break",
        "<b>unclosed",
        "<b>x</i>",
        "a < b",
        '<span class="x">s</span>',
        "Fish & chips",
        "<div>x</div>",
    ]
    for text in bad:
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(USER, text, parse_mode="HTML")
    good = (
        '<b>b</b><i>i</i><u>u</u><s>s</s><tg-spoiler>p</tg-spoiler><a href="https://x.org">l</a>'
        '<code>c</code><pre><code class="language-py">x</code></pre><blockquote expandable>q'
        "</blockquote> &lt;&gt;&amp;&quot;&#39;&#x1F600;"
    )
    message = await bot.send_message(USER, good, parse_mode="HTML")
    assert message.text is not None and message.text.endswith("<>&\"'😀")
    assert {e.type for e in message.entities} >= {"bold", "pre", "text_link", "spoiler"}


async def test_markdown_v2_needs_escaping(bot: Bot) -> None:
    """Unescaped MarkdownV2 reserved characters fail."""
    with pytest.raises(BadRequest, match=r"(?i)reserved"):
        await bot.send_message(USER, "Done.", parse_mode="MarkdownV2")
    message = await bot.send_message(USER, "*Done*\\.", parse_mode="MarkdownV2")
    assert message.text == "Done." and message.entities[0].type == "bold"


async def test_text_length_limits(bot: Bot) -> None:
    """4096 visible characters pass, 4097 fail; tags do not count."""
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER, "a" * 4097)
    await bot.send_message(USER, "a" * 4096)
    # Tags do not count towards the limit.
    await bot.send_message(USER, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(USER, "<b> </b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
        await bot.send_photo(USER, b"img", caption="c" * 1025)


async def test_callback_data_is_limited_to_64_bytes(bot: Bot) -> None:
    """callback_data is measured in UTF-8 bytes."""
    await bot.send_message(USER, "ok", reply_markup=_keyboard("é" * 32))  # 64 bytes
    for data in ("x" * 65, "é" * 33):
        with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
            await bot.send_message(USER, "too long", reply_markup=_keyboard(data))


def _keyboard(data: str) -> InlineKeyboardMarkup:
    """One button with the given callback data."""
    return InlineKeyboardMarkup([[InlineKeyboardButton("B", callback_data=data)]])


async def test_inline_button_needs_exactly_one_action(api: FakeBotAPI) -> None:
    """A button with no action or two actions is rejected."""
    url = f"{api.base_url}/bot{TOKEN}/sendMessage"
    async with aiohttp.ClientSession() as session:
        for buttons in (
            [{"text": "bare"}],
            [{"text": "two", "url": "https://x.org", "callback_data": "a"}],
        ):
            payload = {"chat_id": USER, "text": "t", "reply_markup": {"inline_keyboard": [buttons]}}
            async with session.post(url, json=payload) as response:
                assert response.status == 400
                body = await response.json()
        assert body["description"].startswith("Bad Request: can't parse inline keyboard button")


async def test_unknown_chat_is_not_found(bot: Bot) -> None:
    """Sending to a chat the fake does not know fails."""
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(999999, "hello?")


async def test_blocked_user_is_forbidden(api: FakeBotAPI, bot: Bot) -> None:
    """block(), and a my_chat_member 'kicked' update, make sends 403."""
    api.block(USER)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(USER, "hello")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(USER, "typing")
    api.inject_message(USER, "/start")  # writing to the bot again unblocks it
    await bot.send_message(USER, "welcome back")
    api.inject_update({"my_chat_member": {"chat": {"id": USER, "type": "private"}}})
    with pytest.raises(Forbidden):
        await bot.send_message(USER, "kicked by the update")


async def test_fail_next_429_raises_retry_after(api: FakeBotAPI, bot: Bot) -> None:
    """An injected 429 reaches PTB as RetryAfter with its delay."""
    api.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "hi")
    assert caught.value.retry_after == dtm.timedelta(seconds=3)
    assert api.errors[-1].status == 429 and api.errors[-1]["method"] == "sendMessage"
    await bot.send_message(USER, "hi")  # only the next call failed


async def test_fail_next_500_is_a_network_error(api: FakeBotAPI, bot: Bot) -> None:
    """An injected 500 is a NetworkError (not a BadRequest)."""
    api.fail_next("sendMessage", status=500, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError) as caught:
            await bot.send_message(USER, "hi")
        assert not isinstance(caught.value, BadRequest)
    await bot.send_message(USER, "hi")


async def test_edit_copy_and_delete(api: FakeBotAPI, bot: Bot) -> None:
    """Edits, copies, forwards and deletes validate like Telegram."""
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("new", chat_id=USER, message_id=77)
    sent = await bot.send_message(USER, "first", reply_markup=two_buttons())
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "first", chat_id=USER, message_id=sent.message_id, reply_markup=two_buttons()
        )
    edited = await bot.edit_message_text("second", chat_id=USER, message_id=sent.message_id)
    assert not isinstance(edited, bool) and edited.text == "second"
    stored = api.message(USER, sent.message_id)
    assert stored is not None and "reply_markup" not in stored  # no markup -> keyboard removed
    assert api.last_text(USER) == "second"
    await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=two_buttons())
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=two_buttons())

    with pytest.raises(BadRequest, match=r"(?i)message to copy not found"):
        await bot.copy_message(USER, USER, 999)
    user_message = api.inject_message(OTHER_USER, "share me")["message"]
    copied = await bot.copy_message(USER, OTHER_USER, user_message["message_id"])
    assert api.sent(USER, "copyMessage")[0].text == "share me"
    assert api.sent(USER, "copymessage")[0].message_id == copied.message_id
    forwarded = await bot.forward_message(USER, OTHER_USER, user_message["message_id"])
    assert forwarded.forward_origin is not None and forwarded.text == "share me"
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text(
            "hack", chat_id=OTHER_USER, message_id=user_message["message_id"]
        )

    assert await bot.delete_message(USER, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("gone", chat_id=USER, message_id=sent.message_id)
    # sent() lists new messages; edits and deletions only on request.
    assert [i.method for i in api.sent(USER)] == ["sendMessage", "copyMessage", "forwardMessage"]
    assert [i.method for i in api.sent(USER, include_edits=True)] == [
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "copyMessage",
        "forwardMessage",
        "deleteMessage",
    ]
    assert [i.text for i in api.sent(USER, "editMessageText")] == ["second"]


async def test_callback_query_round_trip(api: FakeBotAPI, bot: Bot) -> None:
    """A button press arrives with its message and is answered once."""
    sent = await bot.send_message(USER, "Pick", reply_markup=two_buttons())
    api.inject_callback(USER, sent.message_id, "yes")
    api.inject_callback(USER, 404, "orphan")
    updates = await bot.get_updates()
    query = updates[0].callback_query
    assert query is not None and query.data == "yes" and query.from_user.id == USER
    assert query.message is not None and query.message.message_id == sent.message_id
    assert query.message.reply_markup == two_buttons()  # type: ignore[union-attr]
    orphan = updates[1].callback_query
    assert orphan is not None and orphan.message is not None
    assert await bot.answer_callback_query(query.id, text="Saved")
    assert api.callback_answers[0]["text"] == "Saved"
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query.id)


async def test_long_poll_returns_as_soon_as_an_update_arrives(api: FakeBotAPI, bot: Bot) -> None:
    """A long poll wakes on injection and otherwise honours its timeout."""
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.15)
    assert not poll.done()
    api.inject_message(USER, "wake up")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in updates if u.message] == ["wake up"]
    assert time.monotonic() - started < 1.5
    # And an empty long poll honours its timeout.
    started = time.monotonic()
    assert await bot.get_updates(offset=2, timeout=0.2) == ()
    assert 0.15 < time.monotonic() - started < 1.0


async def test_concurrent_get_updates_conflict(api: FakeBotAPI) -> None:
    """A second getUpdates terminates the first with 409."""
    url = f"{api.base_url}/bot{TOKEN}/getUpdates"
    async with aiohttp.ClientSession() as session:

        async def poll() -> tuple[int, dict[str, object]]:
            """One raw long poll."""
            async with session.post(url, data={"timeout": "2"}) as response:
                return response.status, await response.json()

        first = asyncio.create_task(poll())
        await asyncio.sleep(0.1)
        second = asyncio.create_task(poll())
        await asyncio.sleep(0.1)
        status, body = await first
        assert status == 409 and "terminated by other getUpdates" in str(body["description"])
        api.inject_message(USER, "for the survivor")
        status, body = await second
        assert status == 200 and len(body["result"]) == 1  # type: ignore[arg-type]


async def test_unknown_token_is_rejected(api: FakeBotAPI) -> None:
    """An unknown token makes PTB raise InvalidToken."""
    with pytest.raises(InvalidToken):
        async with make_bot(api, "999:NOPE"):
            pass
    assert api.errors[-1].status == 401


async def test_flood_limits_per_chat() -> None:
    """With flood limits, a second message to a chat within 1 s is a 429."""
    async with FakeBotAPI(token=TOKEN, enforce_flood_limits=True) as limited:
        limited.add_chat(USER)
        limited.add_chat(OTHER_USER)
        async with make_bot(limited) as tg_bot:
            await tg_bot.send_message(USER, "one")
            with pytest.raises(RetryAfter) as caught:
                await tg_bot.send_message(USER, "two")
            assert caught.value.retry_after == dtm.timedelta(seconds=1)
            await tg_bot.send_message(OTHER_USER, "other chat is fine")
        assert limited.flood_429_count == 1
        assert len(limited.sent(USER)) == 1


async def test_forum_topics(api: FakeBotAPI, bot: Bot) -> None:
    """Topics can be created, used, edited, closed and reopened."""
    api.add_chat(FORUM, "supergroup", title="Staff", is_forum=True)
    api.add_chat(-100777, "supergroup")
    topic = await bot.create_forum_topic(FORUM, "Peer 1")
    assert topic.name == "Peer 1" and topic.icon_color == 0x6FB9F0
    thread = topic.message_thread_id
    message = await bot.send_message(FORUM, "hello topic", message_thread_id=thread)
    assert message.message_thread_id == thread and message.is_topic_message
    assert api.sent(FORUM)[0].message_thread_id == thread
    assert await bot.edit_forum_topic(FORUM, thread, name="Peer 1 (closed)")
    assert await bot.close_forum_topic(FORUM, thread)
    with pytest.raises(BadRequest, match=r"(?i)topic_closed"):
        await bot.send_message(FORUM, "closed?", message_thread_id=thread)
    with pytest.raises(BadRequest, match=r"(?i)topic_not_modified"):
        await bot.close_forum_topic(FORUM, thread)
    assert await bot.reopen_forum_topic(FORUM, thread)
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(FORUM, "where?", message_thread_id=thread + 100)
    with pytest.raises(BadRequest, match=r"(?i)not a forum"):
        await bot.create_forum_topic(-100777, "nope")
    assert api.topics(FORUM)[thread]["name"] == "Peer 1 (closed)"


async def test_files_upload_and_download(api: FakeBotAPI, bot: Bot) -> None:
    """Uploads get file_ids that getFile and the file URL serve back."""
    photo = await bot.send_photo(USER, b"\x89PNG fake", caption="<i>look</i>", parse_mode="HTML")
    assert photo.caption == "look" and photo.photo
    assert api.sent(USER, "sendPhoto")[0].text == "look"
    tg_file = await bot.get_file(photo.photo[-1].file_id)
    assert await tg_file.download_as_bytearray() == bytearray(b"\x89PNG fake")
    document = await bot.send_document(USER, b"report", filename="report.txt")
    assert document.document is not None and document.document.file_name == "report.txt"
    voice = await bot.send_voice(USER, document.document.file_id)
    assert voice.voice is not None
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_photo(USER, "no-such-file-id")
    api.inject_update(
        {
            "message": {
                "from": {"id": USER, "is_bot": False, "first_name": "T"},
                "voice": {"file_id": "vc", "file_unique_id": "v", "duration": 2},
            }
        }
    )
    injected = await bot.get_file("vc")
    assert (await injected.download_as_bytearray()).startswith(b"fake file")


async def test_setup_methods(api: FakeBotAPI, bot: Bot) -> None:
    """Webhook, commands, menu button, getChat, leaveChat and logOut work."""
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""
    commands = [BotCommand("start", "Start"), BotCommand("help", "Help")]
    assert await bot.set_my_commands(commands)
    assert await bot.get_my_commands() == tuple(commands)
    assert await bot.get_my_commands(language_code="de") == ()
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Start!", "bad")])
    assert await bot.delete_my_commands()
    assert await bot.set_chat_menu_button()
    chat = await bot.get_chat(USER)
    assert chat.id == USER and chat.type == "private"
    assert await bot.send_chat_action(USER, "typing")
    api.add_chat(-100555, "group")
    assert await bot.leave_chat(-100555)
    with pytest.raises(Forbidden, match="not a member"):
        await bot.send_message(-100555, "still here?")
    assert await bot.log_out() and await bot.close()


async def test_inject_raw_redelivers_a_confirmed_update(api: FakeBotAPI, bot: Bot) -> None:
    """inject_raw delivers a duplicate update_id once more."""
    update = api.inject_message(USER, "/help")
    assert [u.update_id for u in await bot.get_updates()] == [1]
    assert await bot.get_updates(offset=2) == ()
    api.inject_raw(update)
    second = api.inject_message(USER, "/start")
    assert second["update_id"] == 2
    assert [u.update_id for u in await bot.get_updates(offset=2)] == [1, 2]
    assert await bot.get_updates(offset=3) == ()


async def test_waiters(api: FakeBotAPI, bot: Bot) -> None:
    """wait_for_sent and wait_until_idle wait, and time out with details."""

    async def reply_later() -> None:
        """Send two messages after a short pause."""
        await asyncio.sleep(0.05)
        await bot.send_message(USER, "one")
        await bot.send_message(USER, "two")

    task = asyncio.create_task(reply_later())
    items = await api.wait_for_sent(USER, 2, timeout=3)
    await task
    assert [item.text for item in items] == ["one", "two"]
    with pytest.raises(TimeoutError):
        await api.wait_for_sent(USER, 3, timeout=0.1)

    api.inject_message(USER, "unfetched")
    with pytest.raises(TimeoutError, match="1 undelivered"):
        await api.wait_until_idle(quiet=0.05, timeout=0.2)
    await bot.get_updates()
    await api.wait_until_idle(quiet=0.05, timeout=2)


async def test_raw_http_json_body_errors_and_control_api(api: FakeBotAPI) -> None:
    """JSON bodies, exact error bodies and the /_fake/ control API."""
    base = api.base_url
    async with aiohttp.ClientSession() as session:
        payload = {
            "chat_id": str(USER),
            "text": "json body",
            "reply_markup": '{"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}',
        }
        async with session.post(f"{base}/bot{TOKEN}/sendMessage", json=payload) as response:
            body = await response.json()
        assert body["ok"] is True and body["result"]["reply_markup"]["inline_keyboard"]
        async with session.post(f"{base}/bot{TOKEN}/noSuchMethod") as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
        async with session.get(f"{base}/bot1:WRONG/getMe") as response:
            assert response.status == 401
            assert await response.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with session.post(
            f"{base}/_fake/inject_message", json={"user_id": USER, "text": "via control"}
        ) as response:
            assert (await response.json())["result"]["update_id"] == 1
        async with session.get(f"{base}/_fake/stats") as response:
            stats = await response.json()
        assert stats["pending_updates"] == 1 and stats["sent"] == 1
        async with session.get(f"{base}/_fake/sent", params={"chat_id": str(USER)}) as response:
            assert (await response.json())[0]["text"] == "json body"


async def test_latency_delays_but_requests_overlap() -> None:
    """latency_ms delays each answer without serialising requests."""
    async with FakeBotAPI(token=TOKEN, latency_ms=150) as slow:
        url = f"{slow.base_url}/bot{TOKEN}/getMe"
        async with aiohttp.ClientSession() as session:

            async def get_me() -> int:
                """One raw getMe call."""
                async with session.get(url) as response:
                    return response.status

            started = time.monotonic()
            assert await asyncio.gather(get_me(), get_me(), get_me()) == [200, 200, 200]
            elapsed = time.monotonic() - started
        assert 0.14 < elapsed < 0.4


async def test_ptb_application_polls_the_fake(api: FakeBotAPI) -> None:
    """The full Application/Updater cycle: start, answer a command and a button, stop."""
    app = (
        Application.builder()
        .token(TOKEN)
        .base_url(f"{api.base_url}/bot")
        .base_file_url(f"{api.base_url}/file/bot")
        .build()
    )

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answer /start with a keyboard."""
        assert update.message is not None
        await update.message.reply_text("Pick", reply_markup=two_buttons())

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answer the button and edit the message."""
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(f"chose {query.data}")

    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1, drop_pending_updates=True)
        api.inject_message(USER, "/start")
        [menu] = await api.wait_for_sent(USER, 1, timeout=3)
        api.inject_callback(USER, menu.message_id or 0, "yes")
        await api.wait_until_idle(quiet=0.1, timeout=3)
        await app.updater.stop()
        await app.stop()
    assert api.last_text(USER) == "chose yes"
    assert api.errors == []
    assert api.pending_updates() == []  # the Updater's final getUpdates confirmed everything
