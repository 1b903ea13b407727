"""Craving check-in: how strong, what for, what feeds it, a coping step that fits, a check back.

States: LEVEL -> SUBSTANCE -> TRIGGERS -> COPING; a follow-up asks if the urge passed (CHECKBACK).
"""

from __future__ import annotations

import re
from enum import StrEnum

from flows import peer
from flows.copy import plural, text
from flows.engine import (
    Button,
    Event,
    EventKind,
    OpenEscalation,
    Outcome,
    RecordCheckIn,
    RecordOutcome,
    Reply,
    ScheduleFollowUp,
    State,
)

NAME = "craving"
FOLLOWUP_KIND = "craving_checkback"
HIGH = 8  # at or above: offer a person first, and flag it for the volunteer desk
HIGH_CRAVING_PRIORITY = 1
SUBSTANCES = (
    "alcohol",
    "opioids",
    "stimulants",
    "cannabis",
    "benzodiazepines",
    "nicotine",
    "other",
)
HALT = ("hungry", "angry", "lonely", "tired")
TRIGGERS = (*HALT, "people", "places", "emotions", "stress")
CHECK_BACK_MINUTES = (15, 30, 60)
COPING_ORDER = ("surf", "delay", "reach_out")
# Number words in each language's catalogue ("an eight", "un ocho", "на восемь").
NUMBER_WORDS = {
    word: value
    for words in (
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
        ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez"),
        ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"),
    )
    for value, word in enumerate(words)
} | {"десять": 10}
# Words people use for each trigger, so typing works as well as tapping.
TRIGGER_WORDS = {
    "hungry": r"hungry|starving|haven'?t eaten|no food",
    "angry": r"angry|mad|furious|pissed|rage|annoyed",
    "lonely": r"lonely|alone|isolated|no one|nobody",
    "tired": r"tired|exhausted|no sleep|can'?t sleep|sleepy|worn out",
    "people": r"friends?|people|family|ex|partner|party|mates",
    "places": r"bar|pub|club|place|street|neighbou?rhood|liquor store|home alone",
    "emotions": r"sad|anxious|anxiety|depressed|bored|scared|guilty|ashamed|upset|feel",
    "stress": r"stress|work|money|bills|boss|exam|pressure",
}
# The same in Spanish and Russian: word beginnings, so "enfadad", "одинок" cover their forms.
TRIGGER_WORDS_ES = {
    "hungry": r"hambre|hambrient|no he comido|sin comer",
    "angry": r"enfad|enojad|cabread|rabia|furios|bronca|me pele|pelea|discut",
    "lonely": r"sola\b|solo en casa|estoy solo|me siento solo|soledad|nadie|aislad",
    "tired": r"cansad|agotad|reventad|sin dormir|no he dormido|no duermo|no puedo dormir",
    "people": r"amig|gente|familia|mi ex\b|pareja|novi[oa]|fiesta|colegas|parce|compas|mi madre|"
    r"mi padre|mi mam|mi pap",
    "places": r"bar\b|bares|antro|discoteca|boliche|la calle|el barrio|en casa sol",
    "emotions": r"triste|ansios|ansiedad|deprimid|aburrid|miedo|culpa|verg[uü]enza|agobiad|"
    r"baj[oó]n",
    "stress": r"estr[eé]s|trabajo|curro|chamba|dinero|plata|deudas|jefe|examen|presi[oó]n",
}
TRIGGER_WORDS_RU = {
    "hungry": r"голод|не ел|не ела|жрать хочу",
    "angry": r"злюсь|злой|злая|зла\b|бесит|бешен|ярост|раздраж|поругал|поссорил|ссор",
    "lonely": r"одинок|один дома|одна дома|одна\b|никого|не с кем|никому",
    "tired": r"устал|вымотал|не спал|не сплю|не выспал|бессонниц|сил нет",
    "people": r"друз|друг\b|подруг|компани|семь[яеию]|родител|мам|отец|отцом|жен[аоу]|муж\b|"
    r"мужем|бывш|девушк|парн|тусовк|вечеринк",
    "places": r"бар\b|клуб|улиц|район|магазин|кабак",
    "emotions": r"грус|тоск|тревог|депресс|скучн|скука|страш|страх|стыд|виноват|паник",
    "stress": r"стресс|работ|деньг|долг|кредит|начальник|шеф|экзамен|сесси|давлен",
}


class Step(StrEnum):
    """Where a person is in a craving check-in."""

    LEVEL = "level"
    SUBSTANCE = "substance"
    TRIGGERS = "triggers"
    COPING = "coping"
    CHECKBACK = "checkback"


def _level_buttons() -> tuple[tuple[Button, ...], ...]:
    row1 = tuple(Button(str(i), f"crv:lvl:{i}") for i in range(0, 6))
    row2 = tuple(Button(str(i), f"crv:lvl:{i}") for i in range(6, 11))
    return (row1, row2)


def _substance_buttons(lang: str) -> tuple[tuple[Button, ...], ...]:
    buttons = [Button(text(lang, f"craving.substance.{s}"), f"crv:sub:{s}") for s in SUBSTANCES]
    buttons.append(Button(text(lang, "craving.skip"), "crv:sub:skip"))
    return tuple(tuple(buttons[i : i + 4]) for i in range(0, len(buttons), 4))


def _trigger_buttons(lang: str, chosen: list[str]) -> tuple[tuple[Button, ...], ...]:
    def label(trigger: str) -> str:
        mark = "✓ " if trigger in chosen else ""
        return mark + text(lang, f"craving.trigger.{trigger}")

    buttons = [Button(label(t), f"crv:trg:{t}") for t in TRIGGERS]
    rows = [tuple(buttons[i : i + 4]) for i in range(0, len(buttons), 4)]
    rows.append((Button(text(lang, "craving.done"), "crv:trg:done"),))
    return tuple(rows)


def _coping_buttons(lang: str) -> tuple[tuple[Button, ...], ...]:
    return (
        (
            Button(text(lang, "craving.button.another"), "crv:next"),
            Button(text(lang, "craving.button.peer"), "crv:peer"),
        ),
        tuple(
            Button(text(lang, f"craving.button.check{m}"), f"crv:back:{m}")
            for m in CHECK_BACK_MINUTES
        ),
        (Button(text(lang, "craving.button.ok"), "crv:ok"),),
    )


def level_from_text(message: str, entity: str | None = None) -> int | None:
    """A craving level 0-10 from the NLU entity, a digit ("8/10", "a 7") or a number word."""
    for candidate in (entity, message):
        if not candidate:
            continue
        digits = re.search(r"(?<![\d.])(10|[0-9])(?:\s*/\s*10)?(?![\d.])", candidate)
        if digits:
            return int(digits.group(1))
        for word, value in NUMBER_WORDS.items():
            if re.search(rf"\b{word}\b", candidate.lower()):
                return value
    return None


def triggers_from_text(message: str) -> list[str]:
    """Triggers named in free text ("lonely and tired after work")."""
    lowered = message.lower()
    # Every language's words: people mix languages, and none of these collide.
    tables = (TRIGGER_WORDS, TRIGGER_WORDS_ES, TRIGGER_WORDS_RU)
    return [
        t
        for t in TRIGGER_WORDS
        if any(re.search(rf"\b(?:{table[t]})", lowered) for table in tables)
    ]


def start(state: State, event: Event) -> Outcome:
    """Begin a check-in; a level or substance already in the message is not asked again."""
    understanding = event.understanding
    entity = understanding.entity("craving_level") if understanding else None
    level = level_from_text("", entity) if entity else None
    substance = understanding.entity("substance") if understanding else None
    fresh = state.at(NAME, Step.LEVEL, substance=substance)
    if level is None:
        lang = state.person.language
        return Outcome((Reply(text(lang, "craving.ask_level"), _level_buttons()),), fresh)
    return _after_level(fresh, level)


def _after_level(state: State, level: int) -> Outcome:
    lang = state.person.language
    data = {**state.data, "level": level}
    if data.get("substance"):
        return _ask_triggers(state.at(NAME, Step.TRIGGERS, **data), [])
    reply = Reply(text(lang, "craving.ask_substance"), _substance_buttons(lang))
    return Outcome((reply,), state.at(NAME, Step.SUBSTANCE, **data))


def _ask_triggers(state: State, chosen: list[str], more: bool = False) -> Outcome:
    lang = state.person.language
    key = "craving.ask_triggers_more" if more else "craving.ask_triggers"
    reply = Reply(text(lang, key), _trigger_buttons(lang, chosen))
    return Outcome((reply,), state.at(NAME, Step.TRIGGERS, **{**state.data, "triggers": chosen}))


def handle(state: State, event: Event) -> Outcome | None:
    """One answer within the check-in; None when the person moved on to something else."""
    step = Step(state.step) if state.step in {s.value for s in Step} else None
    payload = event.payload if event.kind is EventKind.BUTTON else None
    if step is Step.LEVEL:
        return _on_level(state, event, payload)
    if step is Step.SUBSTANCE:
        return _on_substance(state, event, payload)
    if step is Step.TRIGGERS:
        return _on_triggers(state, event, payload)
    if step is Step.COPING:
        return _on_coping(state, payload)
    if step is Step.CHECKBACK:
        return _on_checkback(state, event, payload)
    return None


def _on_level(state: State, event: Event, payload: str | None) -> Outcome | None:
    if payload and payload.startswith("crv:lvl:"):
        value = payload.removeprefix("crv:lvl:")
        return _after_level(state, int(value)) if value in {str(i) for i in range(11)} else None
    if event.kind is EventKind.TEXT:
        entity = event.understanding.entity("craving_level") if event.understanding else None
        level = level_from_text(event.text, entity)
        if level is not None:
            return _after_level(state, level)
        if event.intent in (None, "out_of_scope", "craving", "affirm", "deny"):
            lang = state.person.language
            return Outcome((Reply(text(lang, "craving.ask_level_again"), _level_buttons()),), state)
    return None


def _on_substance(state: State, event: Event, payload: str | None) -> Outcome | None:
    substance: str | None = None
    if payload and payload.startswith("crv:sub:"):
        value = payload.removeprefix("crv:sub:")
        if value not in (*SUBSTANCES, "skip"):
            return None
        substance = None if value == "skip" else value
    elif event.kind is EventKind.TEXT:
        substance = event.understanding.entity("substance") if event.understanding else None
        if substance is None and event.intent not in (None, "out_of_scope", "deny", "craving"):
            return None
    else:
        return None
    data = {**state.data, "substance": substance}
    return _ask_triggers(state.at(NAME, Step.TRIGGERS, **data), [])


def _on_triggers(state: State, event: Event, payload: str | None) -> Outcome | None:
    chosen = list(state.data.get("triggers") or [])
    if payload and payload.startswith("crv:trg:"):
        value = payload.removeprefix("crv:trg:")
        if value == "done":
            return _coping(state, chosen)
        if value not in TRIGGERS:
            return None
        chosen = [t for t in chosen if t != value] if value in chosen else [*chosen, value]
        return _ask_triggers(state, chosen, more=True)
    if event.kind is EventKind.TEXT:
        named = triggers_from_text(event.text)
        if named or event.intent in ("deny", "affirm", "out_of_scope", "mood_negative"):
            return _coping(state, sorted(set(chosen) | set(named), key=TRIGGERS.index))
    return None


def _coping(state: State, triggers: list[str]) -> Outcome:
    """The coping step: what fits the level and the triggers; the check-in is recorded."""
    lang = state.person.language
    level = int(state.data.get("level") or 0)
    parts: list[str] = []
    if triggers:
        names = ", ".join(text(lang, f"craving.trigger.{t}").lower() for t in triggers)
        parts.append(text(lang, "craving.selected", triggers=names))
    if level >= HIGH:
        parts.append(text(lang, "craving.high"))
    first = _first_tool(level, triggers)
    parts.append(_tool_text(lang, first, triggers))
    if not state.person.consent_checkins:
        parts.append(text(lang, "craving.not_saved"))
    parts.append(text(lang, "craving.offer_next"))
    record = RecordCheckIn(
        kind="craving",
        craving_level=level,
        substance=state.data.get("substance"),
        triggers=tuple(triggers),
    )
    next_state = state.at(
        NAME, Step.COPING, **{**state.data, "triggers": triggers, "tools": [first]}
    )
    effects: tuple[RecordCheckIn | OpenEscalation, ...] = (record,)
    if level >= HIGH:
        effects += (OpenEscalation(reason="high_craving", priority=HIGH_CRAVING_PRIORITY),)
    return Outcome((Reply("\n\n".join(parts), _coping_buttons(lang)),), next_state, effects)


def _first_tool(level: int, triggers: list[str]) -> str:
    """HALT needs first when they are part of it; very strong urges: surf; else delay."""
    if any(t in HALT for t in triggers):
        return "halt"
    if level >= HIGH:
        return "surf"
    if "lonely" in triggers or "people" in triggers:
        return "reach_out"
    return "delay" if level >= 4 else "surf"


def _tool_text(lang: str, tool: str, triggers: list[str]) -> str:
    if tool == "halt":
        tips = "\n".join(text(lang, f"craving.halt.{t}") for t in triggers if t in HALT)
        return text(lang, "craving.coping.halt", halt_tips=tips)
    return text(lang, f"craving.coping.{tool}")


def _on_coping(state: State, payload: str | None) -> Outcome | None:
    lang = state.person.language
    if payload == "crv:next":
        used = list(state.data.get("tools") or [])
        remaining = [t for t in COPING_ORDER if t not in used] or list(COPING_ORDER)
        tool = remaining[0]
        data = {**state.data, "tools": [*used, tool]}
        reply = Reply(_tool_text(lang, tool, []), _coping_buttons(lang))
        return Outcome((reply,), state.at(NAME, Step.COPING, **data))
    if payload == "crv:peer":
        # A strong craving was already flagged for the desk; this is the person asking.
        return peer.connect(state.idle())
    if payload and payload.startswith("crv:back:"):
        minutes = payload.removeprefix("crv:back:")
        if minutes not in {str(m) for m in CHECK_BACK_MINUTES}:
            return None
        later = ScheduleFollowUp(FOLLOWUP_KIND, int(minutes))
        reply = Reply(plural(lang, "craving.scheduled", int(minutes), minutes=minutes))
        return Outcome((reply,), state.idle(), (later,))
    if payload == "crv:ok":
        return Outcome((Reply(text(lang, "craving.ok")),), state.idle())
    return None


def _checkback_buttons(lang: str) -> tuple[tuple[Button, ...], ...]:
    return (
        (
            Button(text(lang, "craving.followup.passed"), "crv:fu:passed"),
            Button(text(lang, "craving.followup.still"), "crv:fu:still"),
        ),
        (Button(text(lang, "craving.followup.used"), "crv:fu:used"),),
    )


def on_followup(state: State) -> Outcome:
    """The check back the person asked for: did the urge pass?"""
    lang = state.person.language
    reply = Reply(text(lang, "craving.followup.ask"), _checkback_buttons(lang))
    return Outcome((reply,), state.at(NAME, Step.CHECKBACK))


def _on_checkback(state: State, event: Event, payload: str | None) -> Outcome | None:
    lang = state.person.language
    answer = payload.removeprefix("crv:fu:") if payload and payload.startswith("crv:fu:") else None
    if answer is None and event.kind is EventKind.TEXT:
        answer = {"mood_positive": "passed", "lapse": "used", "craving": "still"}.get(
            event.intent or ""
        )
    if answer == "passed":
        reply = Reply(text(lang, "craving.followup.well_done"))
        return Outcome((reply,), state.idle(), (RecordOutcome("craving", "passed"),))
    if answer == "still":
        intro = Reply(text(lang, "craving.followup.still_there"))
        tool = Reply(_tool_text(lang, "reach_out", []), _coping_buttons(lang))
        data = {"tools": ["reach_out"], "level": state.data.get("level")}
        effects = (RecordOutcome("craving", "still"),)
        return Outcome((intro, tool), state.at(NAME, Step.COPING, **data), effects)
    if answer == "used":
        from flows import lapse

        recorded = Outcome((), state.idle(), (RecordOutcome("craving", "used"),))
        return recorded.then(lapse.start(state.idle(), event))
    return None
