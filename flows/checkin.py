"""Daily check-in (mood, craving, any use, a note) and the weekly recovery checkup.

Daily:  MOOD -> CRAVING -> USED -> NOTE -> summary (SUMMARY while the craving tools are offered).
Weekly: DAYS -> PROBLEMS -> HELP -> OFFER (a way back into treatment, or a peer) or encouragement.

The weekly checkup follows the spirit of Recovery Management Checkups (Scott & Dennis, Addiction
2009;104:959-971): ask regularly about recent use, problems and the person's own sense of need,
and when one of them says things are slipping, offer a warm route back into treatment early
instead of waiting for a crisis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from flows import craving, peer, referral
from flows.copy import text
from flows.engine import (
    Button,
    Event,
    EventKind,
    Outcome,
    RecordCheckIn,
    Reply,
    State,
)
from nlu.understanding import Entity, IntentScore, Understanding

NAME = "checkin"
DAILY_FOLLOWUP_KIND = "daily_checkin"
WEEKLY_FOLLOWUP_KIND = "weekly_checkup"
PREFIX = "chk:"  # every payload of this module starts with it; the rest is validated per step

MOODS = (1, 2, 3, 4, 5)
CRAVING_LEVELS = tuple(range(11))
# Offering the craving tools costs nothing, so it starts below craving.HIGH (8), the level
# at which the craving flow itself also asks the volunteer desk for a person.
CRAVING_TOOLS_AT = 6
DAY_BUCKETS = ("0", "1-2", "3-4", "5+")
# Use on 3 or more of the past 7 days triggers the offer. RMC looked back over a whole quarter;
# one week is a noisier snapshot, and for some people one or two days is the plan (reduced use),
# so 1-2 days alone never triggers it. Problems or the person's own sense of need always do.
OFFER_DAYS = frozenset({"3-4", "5+"})
HELP_ANSWERS = ("yes", "no", "unsure")
CHECKUP_PRIORITY = 2  # as a peer request: wanted, not urgent (a crisis is 0-1)
NOTE_MAX_CHARS = 4096  # Telegram's own cap; the console can send more
# Typed at the note step, these are requests rather than notes: the note is still kept, and the
# request is answered after the summary. Below this confidence it is just a note.
NOTE_REQUESTS = ("request_peer", "find_treatment", "find_meeting", "harm_reduction")
NOTE_REQUEST_CONFIDENCE = 0.8
# The person asks for less of us: no note stored, the check-in dropped, the router answers.
NOTE_WITHDRAW = frozenset({"delete_data", "stop_reminders"})

# Small talk or a misread answer: ask the question again instead of leaving the check-in.
_CHAT = frozenset(
    {"out_of_scope", "affirm", "deny", "greet", "thanks", "start_checkin"}
    | {"mood_positive", "mood_negative"}
)

_UNSURE = re.compile(
    r"\b(?:not sure|unsure|don'?t know|dunno|no idea|idk|maybe|perhaps|hard to say|"
    r"can'?t (?:say|remember))\b"
)
_NO = re.compile(
    r"^\W*(?:no|nope|nah|none|never|not at all|not really|not once|i didn'?t|didn'?t|"
    r"i haven'?t|haven'?t|i have not|i don'?t|don'?t)\b"
)
_YES = re.compile(
    r"^\W*(?:yes|yeah|yep|yup|yea|ya|sure|i did|did|i have|i do|a (?:little|bit|few|couple)|"
    r"some|once|twice)\b"
)
_NO_CRAVING = re.compile(
    r"^\W*(?:no|none|nothing|nope|nah|not at all|not really|zero)\b|\bno cravings?\b"
)
_NUMBER = re.compile(r"(?<![\d.])(\d+)(?:\s*/\s*(\d+))?(?![\d.])")
_MOOD_NUMBER_WORD = re.compile(
    r"^\W*(?:(?:a|about|maybe|like|i'?d say)\s+)?(one|two|three|four|five)\W*$"
)
# Checked in order, so "not bad" is read before "bad" and "very low" before "low".
_MOOD_WORDS: tuple[tuple[int, re.Pattern[str]], ...] = tuple(
    (value, re.compile(rf"\b(?:{words})\b"))
    for value, words in (
        (1, r"very low|really low|very bad|really bad|awful|terrible|horrible|dreadful|"
         r"the worst|rock bottom|miserable|hopeless"),
        (3, r"not (?:too |that |so )?bad"),
        (2, r"not (?:too |that |so |very |feeling )?(?:good|great|well|ok|okay|fine)"),
        (5, r"great|very good|really good|amazing|excellent|fantastic|brilliant|wonderful|"
         r"awesome|the best"),
        (2, r"low|bad|down|rough|sad|meh|struggling|stressed|anxious|lonely|crap|rubbish"),
        (4, r"good|well|decent|better|positive|happy"),
        (3, r"ok|okay|alright|all right|so-so|so so|fine|average|mixed|middling"),
    )
)  # fmt: skip
_DAY_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (bucket, re.compile(rf"\b(?:{words})\b"))
    for bucket, words in (
        ("5+", r"every ?day|daily|all week|each day|most days|every single day|all of them"),
        ("3-4", r"a few|several|half"),
        ("1-2", r"once|twice|a couple|one day|a day"),
        ("0", r"none|no days?|not at all|not once|never|zero|nope|no"),
    )
)  # fmt: skip


class Step(StrEnum):
    """Where a person is in a check-in."""

    MOOD = "mood"
    CRAVING = "craving"
    USED = "used"
    NOTE = "note"
    SUMMARY = "summary"
    DAYS = "days"
    PROBLEMS = "problems"
    HELP = "help"
    OFFER = "offer"


Rows = tuple[tuple[Button, ...], ...]


# --- parsing typed answers ---------------------------------------------------------------


def mood_from_text(message: str) -> int | None:
    """A mood 1-5 from "4", "3/5", "a three", "pretty low" or "not bad"; None if not one."""
    lowered = message.lower()
    number = _NUMBER.search(lowered)
    if number:
        value, scale = int(number.group(1)), number.group(2)
        return value if value in MOODS and scale in (None, "5") else None
    word = _MOOD_NUMBER_WORD.match(lowered)
    if word:
        return ("one", "two", "three", "four", "five").index(word.group(1)) + 1
    for value, pattern in _MOOD_WORDS:
        if pattern.search(lowered):
            return value
    return None


def _has_number(message: str) -> bool:
    return _NUMBER.search(message) is not None


def craving_from_text(message: str, entity: str | None = None) -> int | None:
    """A craving level 0-10 ("7", "seven", "8/10"), or 0 for "none" / "no cravings"."""
    level = craving.level_from_text(message, entity)
    if level is not None:
        return level
    return 0 if _NO_CRAVING.search(message.lower()) else None


def yes_no_from_text(message: str) -> str | None:
    """The answer yes, no or unsure from typed words (the NLU reads "not sure" as deny)."""
    lowered = message.lower()
    if _UNSURE.search(lowered):
        return "unsure"
    if _NO.search(lowered):
        return "no"
    if _YES.search(lowered):
        return "yes"
    return None


def days_from_text(message: str) -> str | None:
    """A day bucket ("0", "1-2", "3-4", "5+") from "2 days", "twice", "every day", "none"."""
    lowered = message.lower()
    if _UNSURE.search(lowered):
        return None
    number = _NUMBER.search(lowered)
    if number:
        return _bucket(int(number.group(1)))
    level = craving.level_from_text(lowered)  # number words: "two", "five"
    if level is not None:
        return _bucket(level)
    for bucket, pattern in _DAY_WORDS:
        if pattern.search(lowered):
            return bucket
    return None


def _bucket(days: int) -> str | None:
    if days > 7:
        return None  # not a number of days in a week: ask again rather than guess
    if days == 0:
        return "0"
    if days <= 2:
        return "1-2"
    return "3-4" if days <= 4 else "5+"


def _choice(payload: str | None, prefix: str, allowed: tuple[str, ...]) -> str | None:
    """The value of one of our payloads, if it is exactly one we offer (payloads are untrusted)."""
    if payload is None or not payload.startswith(prefix):
        return None
    value = payload.removeprefix(prefix)
    return value if value in allowed else None


# --- buttons -------------------------------------------------------------------------------


def _mood_buttons(lang: str) -> Rows:
    row = tuple(Button(text(lang, f"checkin.mood.{m}"), f"chk:mood:{m}") for m in MOODS)
    return (row[:3], row[3:])


def _craving_buttons(lang: str) -> Rows:
    # 0 comes last, so in the console (where typing "7" presses button 7) a button's number is
    # its level; typing 0 matches no button and is read as the level 0.
    return (
        tuple(Button(str(i), f"chk:crv:{i}") for i in range(1, 6)),
        tuple(Button(str(i), f"chk:crv:{i}") for i in range(6, 11)),
        (Button(text(lang, "checkin.craving_none"), "chk:crv:0"),),
    )


def _used_buttons(lang: str) -> Rows:
    return (
        (
            Button(text(lang, "checkin.used_yes"), "chk:used:yes"),
            Button(text(lang, "checkin.used_no"), "chk:used:no"),
        ),
    )


def _note_buttons(lang: str) -> Rows:
    return ((Button(text(lang, "checkin.skip"), "chk:note:skip"),),)


def _tools_buttons(lang: str) -> Rows:
    return (
        (Button(text(lang, "checkin.button_tools"), "chk:tools"),),
        (Button(text(lang, "checkin.button_not_now"), "chk:done"),),
    )


def _days_buttons(lang: str) -> Rows:
    buttons = tuple(
        Button(text(lang, f"checkin.weekly.days.{b}"), f"chk:wk:days:{b}") for b in DAY_BUCKETS
    )
    return (buttons[:2], buttons[2:])


def _problems_buttons(lang: str) -> Rows:
    return (
        (
            Button(text(lang, "checkin.weekly.yes"), "chk:wk:prob:yes"),
            Button(text(lang, "checkin.weekly.no"), "chk:wk:prob:no"),
        ),
    )


def _help_buttons(lang: str) -> Rows:
    return (
        tuple(Button(text(lang, f"checkin.weekly.{a}"), f"chk:wk:help:{a}") for a in HELP_ANSWERS),
    )


def _offer_buttons(lang: str) -> Rows:
    return (
        (Button(text(lang, "checkin.weekly.button_treatment"), "chk:wk:treat"),),
        (Button(text(lang, "checkin.weekly.button_peer"), "chk:wk:peer"),),
        (Button(text(lang, "checkin.weekly.button_later"), "chk:wk:later"),),
    )


# Each step's question and the buttons that answer it, for asking and for asking again.
_QUESTIONS: dict[Step, tuple[str, Callable[[str], Rows]]] = {
    Step.MOOD: ("checkin.ask_mood", _mood_buttons),
    Step.CRAVING: ("checkin.ask_craving", _craving_buttons),
    Step.USED: ("checkin.ask_used", _used_buttons),
    Step.DAYS: ("checkin.weekly.ask_days", _days_buttons),
    Step.PROBLEMS: ("checkin.weekly.ask_problems", _problems_buttons),
    Step.HELP: ("checkin.weekly.ask_help", _help_buttons),
}


def _ask(state: State, step: Step, preface: str = "", **data: Any) -> Outcome:
    """Ask the question of a step (after an optional preface); data is the answers so far."""
    lang = state.person.language
    key, buttons = _QUESTIONS[step]
    body = (preface + "\n\n" if preface else "") + text(lang, key)
    return Outcome((Reply(body, buttons(lang)),), state.at(NAME, step, **data))


def _ask_again(state: State, step: Step) -> Outcome:
    """The same question, shorter, with its buttons; nothing changes."""
    lang = state.person.language
    key, buttons = _QUESTIONS[step]
    return Outcome((Reply(text(lang, f"{key}_again"), buttons(lang)),), state)


def _ask_note(state: State, **data: Any) -> Outcome:
    lang = state.person.language
    # Promising encryption to someone whose note will not be kept at all would be untrue.
    key = "checkin.ask_note" if state.person.consent_checkins else "checkin.ask_note_unsaved"
    return Outcome(
        (Reply(text(lang, key), _note_buttons(lang)),), state.at(NAME, Step.NOTE, **data)
    )


# --- entry points --------------------------------------------------------------------------


def start(state: State, event: Event | None = None) -> Outcome:
    """Begin the daily check-in (start_checkin, /checkin): ask the mood."""
    return _ask(state, Step.MOOD, text(state.person.language, "checkin.intro"))


def start_weekly(state: State, event: Event | None = None) -> Outcome:
    """Begin the weekly checkup (/checkup): ask on how many days the person drank or used."""
    return _ask(state, Step.DAYS, text(state.person.language, "checkin.weekly.intro"))


def on_followup_daily(state: State) -> Outcome:
    """The scheduled daily check-in: a short hello, then the mood question."""
    return _ask(state, Step.MOOD, text(state.person.language, "checkin.followup_intro"))


def on_followup_weekly(state: State) -> Outcome:
    """The scheduled weekly checkup: a short hello, then the first question."""
    return _ask(state, Step.DAYS, text(state.person.language, "checkin.weekly.followup_intro"))


def handle(state: State, event: Event) -> Outcome | None:
    """One answer within a check-in; None when the person moved on to something else."""
    if state.flow != NAME or state.step not in {s.value for s in Step}:
        return None
    if event.kind is EventKind.BUTTON:
        payload = event.payload or ""
        if not payload.startswith(PREFIX):
            return None  # another flow's button, pressed late: the router says so
    elif event.kind is EventKind.TEXT:
        payload = None
    else:
        return None
    return _HANDLERS[Step(state.step)](state, event, payload)


# --- daily ---------------------------------------------------------------------------------


def _entity(event: Event, name: str) -> str | None:
    return event.understanding.entity(name) if event.understanding else None


def _on_mood(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is not None:
        value = _choice(payload, "chk:mood:", tuple(str(m) for m in MOODS))
        # One of our own buttons, but not for this question (an old message): ask this one.
        return _ask_again(state, Step.MOOD) if value is None else _after_mood(state, int(value))
    mood = mood_from_text(event.text)
    if mood is None and not _has_number(event.text):
        mood = {"mood_positive": 4, "mood_negative": 2}.get(event.intent or "")
    if mood is not None:
        return _after_mood(state, mood)
    # A number off the scale ("8") is a misread scale, not a craving report: ask again.
    if _has_number(event.text) or event.intent in (None, *_CHAT):
        return _ask_again(state, Step.MOOD)
    return None


def _after_mood(state: State, mood: int) -> Outcome:
    return _ask(state, Step.CRAVING, mood=mood)


def _on_craving(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is not None:
        value = _choice(payload, "chk:crv:", tuple(str(i) for i in CRAVING_LEVELS))
        if value is None:
            return _ask_again(state, Step.CRAVING)
        return _ask(state, Step.USED, **{**state.data, "craving": int(value)})
    level = craving_from_text(event.text, _entity(event, "craving_level"))
    if level is not None:
        return _ask(state, Step.USED, **{**state.data, "craving": level})
    if event.intent in (None, "craving", *_CHAT):
        return _ask_again(state, Step.CRAVING)
    return None


def _on_used(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is not None:
        value = _choice(payload, "chk:used:", ("yes", "no"))
        if value is None:
            return _ask_again(state, Step.USED)
        return _ask_note(state, **{**state.data, "used": value == "yes"})
    answer = yes_no_from_text(event.text)
    if answer is None:
        answer = {"affirm": "yes", "lapse": "yes", "deny": "no"}.get(event.intent or "")
    if answer in ("yes", "no"):
        return _ask_note(state, **{**state.data, "used": answer == "yes"})
    if answer == "unsure" or event.intent in (None, "craving", *_CHAT):
        return _ask_again(state, Step.USED)
    return None


_SKIP_NOTE = re.compile(
    r"^\W*(?:skip|no|nope|nah|nothing|none|no thanks?|not really|not today|n/?a|-)\W*$"
)


def _on_note(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is not None:
        if payload == "chk:note:skip":
            return _summary(state, note=None)
        return _ask_note(state, **state.data)
    if event.intent in NOTE_WITHDRAW:
        return None
    typed = event.text.strip()
    note = None if _SKIP_NOTE.match(typed.lower()) else typed[:NOTE_MAX_CHARS]
    understanding = event.understanding
    if (
        understanding is not None
        and understanding.intent.name in NOTE_REQUESTS
        and understanding.intent.confidence >= NOTE_REQUEST_CONFIDENCE
    ):
        # "Can I talk to someone?" deserves an answer, not just a place in the notes.
        done = _summary(state, note=note, offer_tools=False)
        return done.then(referral.start(done.state, understanding.intent.name))
    return _summary(state, note=note)


def _summary(state: State, note: str | None, offer_tools: bool = True) -> Outcome:
    """The end of the daily check-in: reflect the answers back, record them once."""
    lang = state.person.language
    mood = int(state.data.get("mood") or 3)
    level = int(state.data.get("craving") or 0)
    used = bool(state.data.get("used"))
    consent = state.person.consent_checkins is True
    parts = [text(lang, "checkin.thanks", mood=mood, craving=level)]
    if mood <= 2:
        parts.append(text(lang, "checkin.mood_low"))
    elif mood >= 4 and not used and level < CRAVING_TOOLS_AT:
        parts.append(text(lang, "checkin.mood_good"))
    if used:
        parts += [text(lang, "checkin.used"), text(lang, "checkin.overdose_risk")]
    high = level >= CRAVING_TOOLS_AT
    if high:
        # Only ask "want to work through it?" when the buttons to say so come with it.
        key = "checkin.craving_high" if offer_tools else "checkin.craving_high_later"
        parts.append(text(lang, key, level=level))
    if not used and not high and mood >= 3:
        parts.append(text(lang, "checkin.all_well"))
    elif not high:
        parts.append(text(lang, "checkin.here"))
    if note and consent:
        parts.append(text(lang, "checkin.note_kept"))
    if not consent:
        parts.append(text(lang, "checkin.not_saved"))
    # The bot drops the whole record without consent; the note's words don't even travel there.
    kept_note = note if consent else None
    record = RecordCheckIn(kind="daily", mood=mood, craving_level=level, used=used, note=kept_note)
    if high and offer_tools:
        summary = Reply("\n\n".join(parts), _tools_buttons(lang))
        return Outcome((summary,), state.at(NAME, Step.SUMMARY, craving=level), (record,))
    return Outcome((Reply("\n\n".join(parts)),), state.idle(), (record,))


def _on_summary(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is None:
        payload = {
            "affirm": "chk:tools",
            "craving": "chk:tools",
            "coping_help": "chk:tools",
            "deny": "chk:done",
        }.get(event.intent or "")
    if payload == "chk:tools":
        return _craving_tools(state)
    if payload == "chk:done":
        return Outcome((Reply(text(state.person.language, "checkin.not_now")),), state.idle())
    return None


def _craving_tools(state: State) -> Outcome:
    """Hand over to the craving flow, with the level the person just gave (not asked twice)."""
    level = str(int(state.data.get("craving") or 0))
    understood = Understanding(
        text=level,
        intent=IntentScore("craving", 1.0),
        entities=(Entity("craving_level", level, 0, len(level)),),
        source="checkin",
    )
    handover = Event(kind=EventKind.BUTTON, payload="chk:tools", understanding=understood)
    return craving.start(state.idle(), handover)


# --- weekly --------------------------------------------------------------------------------


def _on_days(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is not None:
        bucket = _choice(payload, "chk:wk:days:", DAY_BUCKETS)
    else:
        bucket = days_from_text(event.text)
    if bucket is not None:
        return _ask(state, Step.PROBLEMS, days=bucket)
    if payload is not None or event.intent in (None, "craving", "lapse", *_CHAT):
        return _ask_again(state, Step.DAYS)
    return None


def _on_problems(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is not None:
        answer = _choice(payload, "chk:wk:prob:", ("yes", "no"))
    else:
        answer = yes_no_from_text(event.text)
        if answer is None:
            answer = {"affirm": "yes", "deny": "no"}.get(event.intent or "")
    if answer in ("yes", "no"):
        return _ask(state, Step.HELP, **{**state.data, "problems": answer == "yes"})
    if payload is not None or answer == "unsure" or event.intent in (None, "lapse", *_CHAT):
        return _ask_again(state, Step.PROBLEMS)
    return None


def _on_help(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload is not None:
        answer = _choice(payload, "chk:wk:help:", HELP_ANSWERS)
    else:
        answer = yes_no_from_text(event.text) or {
            "affirm": "yes",
            "deny": "no",
            "find_treatment": "yes",
            "request_peer": "yes",
            "coping_help": "yes",
        }.get(event.intent or "")
    if answer is not None:
        return _weekly_result(state, answer)
    if payload is not None or event.intent in (None, *_CHAT):
        return _ask_again(state, Step.HELP)
    return None


def needs_offer(answers: Mapping[str, Any]) -> bool:
    """Whether the checkup's answers call for offering a way back into treatment."""
    return (
        answers.get("days") in OFFER_DAYS
        or answers.get("problems") is True
        or answers.get("help") == "yes"
    )


def _weekly_result(state: State, help_answer: str) -> Outcome:
    """The checkup's end: record it once; offer treatment or a peer, or encourage."""
    lang = state.person.language
    answers = {
        "days": str(state.data.get("days")),
        "problems": bool(state.data.get("problems")),
        "help": help_answer,
    }
    record = RecordCheckIn(kind="weekly", used=answers["days"] != "0", answers=answers)
    if needs_offer(answers):
        reasons = [
            text(lang, f"checkin.weekly.reason.{reason}")
            for reason, applies in (
                ("days", answers["days"] in OFFER_DAYS),
                ("problems", answers["problems"]),
                ("help", answers["help"] == "yes"),
            )
            if applies
        ]
        parts = [
            "\n".join([text(lang, "checkin.weekly.offer"), *reasons]),
            text(lang, "checkin.weekly.offer_why"),
            text(lang, "checkin.weekly.offer_ask"),
        ]
    elif help_answer == "unsure":
        # Not sure is worth a door left open, with no reasons listed and no pressure.
        parts = [text(lang, "checkin.weekly.offer_unsure")]
    else:
        parts = [text(lang, "checkin.weekly.steady")]
        if state.person.consent_checkins is not True:
            parts.append(text(lang, "checkin.not_saved"))
        return Outcome((Reply("\n\n".join(parts)),), state.idle(), (record,))
    if state.person.consent_checkins is not True:
        parts.append(text(lang, "checkin.not_saved"))
    reply = Reply("\n\n".join(parts), _offer_buttons(lang))
    return Outcome((reply,), state.at(NAME, Step.OFFER, **answers), (record,))


def _on_offer(state: State, event: Event, payload: str | None) -> Outcome | None:
    lang = state.person.language
    if payload is None:
        payload = {
            "affirm": "chk:wk:treat",
            "find_treatment": "chk:wk:treat",
            "request_peer": "chk:wk:peer",
            "deny": "chk:wk:later",
        }.get(event.intent or "")
    if payload == "chk:wk:treat":
        return referral.start(state.idle(), "find_treatment")
    if payload == "chk:wk:peer":
        return peer.connect(state.idle(), reason="checkup")
    if payload == "chk:wk:later":
        return Outcome((Reply(text(lang, "checkin.weekly.later")),), state.idle())
    return None


_HANDLERS: dict[Step, Callable[[State, Event, str | None], Outcome | None]] = {
    Step.MOOD: _on_mood,
    Step.CRAVING: _on_craving,
    Step.USED: _on_used,
    Step.NOTE: _on_note,
    Step.SUMMARY: _on_summary,
    Step.DAYS: _on_days,
    Step.PROBLEMS: _on_problems,
    Step.HELP: _on_help,
    Step.OFFER: _on_offer,
}
