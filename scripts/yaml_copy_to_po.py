"""One-time migration: the YAML copy (data/copy/) becomes gettext catalogs (data/locale/).

Usage: python scripts/yaml_copy_to_po.py [--copy data/copy] [--locale data/locale]

Writes data/locale/kindred.pot (the English copy: msgctxt = message id, msgid = the English
text) and data/locale/<lang>/LC_MESSAGES/kindred.po for every other language found in the YAML
(msgstr = its translation). Messages that count something become gettext plurals, with the forms
written out below for each language (the YAML only had "one" and "other", or none). Comments in
the English YAML become extracted comments (#.) that translators see next to the message.

It ran once, when the copy moved to gettext; the YAML is gone since. New copy goes straight into
the catalogs: see docs/translating.md.
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import write_po

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "en"
DOMAIN = "kindred"

# Babel turns "Translations template" into "<Language> translations" in each catalog (as
# `pybabel init` does). Lines stay under 76 characters, so pybabel does not rewrap them.
HEADER = """\
Translations template for Kindred.
In data/locale/kindred.pot, each msgid IS the English copy, edited by
hand (the code asks for messages by id and holds no strings to extract:
never run `pybabel extract`). msgctxt is that message id. After editing
English, run: pybabel update -i data/locale/kindred.pot -d data/locale
-D kindred. Keep the words warm, brief (phone screens), person-first and
never judging. Only <b> and <i> tags; keep every {placeholder} as it is.
See docs/translating.md."""


@dataclass(frozen=True)
class Plural:
    """A message that counts: its forms in each language, and the YAML ids it replaces."""

    forms: dict[str, tuple[str, ...]]
    replaces: tuple[str, ...] = ()


def _stats(heading: dict[str, tuple[str, ...]], body: dict[str, str]) -> dict[str, tuple[str, ...]]:
    return {
        lang: tuple(f"<b>{h}</b>\n{body[lang]}" for h in forms) for lang, forms in heading.items()
    }


_STATS_BODY = {
    "en": (
        "Requests: {requests} · claimed: {claimed} · waiting now: {unclaimed_open} · "
        "withdrawn: {withdrawn}\n"
        "Time to claim: median {claim_seconds_median} s · 90% within {claim_seconds_p90} s · "
        "longest {claim_seconds_max} s\n"
        "Ratings: {ratings} (average {rating_mean}) · reports: {reports}"
    ),
    "es": (
        "Solicitudes: {requests} · atendidas: {claimed} · esperando ahora: {unclaimed_open} · "
        "retiradas: {withdrawn}\n"
        "Tiempo hasta atender: mediana {claim_seconds_median} s · el 90 % en "
        "{claim_seconds_p90} s · máximo {claim_seconds_max} s\n"
        "Valoraciones: {ratings} (media {rating_mean}) · avisos: {reports}"
    ),
    "ru": (
        "Заявок: {requests} · взято: {claimed} · ждут сейчас: {unclaimed_open} · "
        "отозвано: {withdrawn}\n"
        "Время до взятия: медиана {claim_seconds_median} с · 90% в пределах "
        "{claim_seconds_p90} с · максимум {claim_seconds_max} с\n"
        "Оценки: {ratings} (в среднем {rating_mean}) · жалобы: {reports}"
    ),
}

# Spanish has three forms in CLDR (and so in Babel): one, "many" (whole millions: "1 000 000 de
# días") and other. Russian: one (1, 21, 101...), few (2-4, 22-24...), many (5-20, 25-30...).
PLURALS: dict[str, Plural] = {
    "progress.checkins": Plural(
        {
            "en": ("• {count} check-in", "• {count} check-ins"),
            "es": ("• {count} registro", "• {count} de registros", "• {count} registros"),
            "ru": ("• {count} отметка", "• {count} отметки", "• {count} отметок"),
        },
        ("progress.checkins.one", "progress.checkins.other"),
    ),
    "progress.passed": Plural(
        {
            "en": (
                "• {count} craving ridden out. That's a real win.",
                "• {count} cravings ridden out. Each one is a real win.",
            ),
            "es": (
                "• {count} vez que dejaste pasar las ganas. Es un logro de verdad.",
                "• {count} de veces que dejaste pasar las ganas. Cada una es un logro de verdad.",
                "• {count} veces que dejaste pasar las ganas. Cada una es un logro de verdad.",
            ),
            "ru": (
                "• {count} волна тяги пережита. Это настоящая победа.",
                "• {count} волны тяги пережиты. Каждая — настоящая победа.",
                "• {count} волн тяги пережито. Каждая — настоящая победа.",
            ),
        },
        ("progress.passed.one", "progress.passed.other"),
    ),
    "progress.days": Plural(
        {
            "en": (
                "• {count} day since the start date you chose.",
                "• {count} days since the start date you chose.",
            ),
            "es": (
                "• {count} día desde la fecha de inicio que elegiste.",
                "• {count} de días desde la fecha de inicio que elegiste.",
                "• {count} días desde la fecha de inicio que elegiste.",
            ),
            "ru": (
                "• {count} день с выбранной тобой даты начала.",
                "• {count} дня с выбранной тобой даты начала.",
                "• {count} дней с выбранной тобой даты начала.",
            ),
        },
        ("progress.days.one", "progress.days.other"),
    ),
    "reminders.when.minutes": Plural(
        {
            "en": ("in {minutes} minute", "in {minutes} minutes"),
            "es": ("en {minutes} minuto", "en {minutes} de minutos", "en {minutes} minutos"),
            "ru": ("через {minutes} минуту", "через {minutes} минуты", "через {minutes} минут"),
        }
    ),
    "reminders.paused_days": Plural(
        {
            "en": (
                "Okay, no scheduled messages for the next {days} day. "
                "Take care of yourself; I'm here if you need me.",
                "Okay, no scheduled messages for the next {days} days. "
                "Take care of yourself; I'm here if you need me.",
            ),
            "es": (
                "De acuerdo, ningún mensaje programado durante el próximo {days} día. "
                "Cuídate; aquí estoy si me necesitas.",
                "De acuerdo, ningún mensaje programado durante los próximos {days} de días. "
                "Cuídate; aquí estoy si me necesitas.",
                "De acuerdo, ningún mensaje programado durante los próximos {days} días. "
                "Cuídate; aquí estoy si me necesitas.",
            ),
            "ru": (
                "Хорошо, никаких запланированных сообщений на ближайший {days} день. "
                "Береги себя; я здесь, если понадоблюсь.",
                "Хорошо, никаких запланированных сообщений на ближайшие {days} дня. "
                "Береги себя; я здесь, если понадоблюсь.",
                "Хорошо, никаких запланированных сообщений на ближайшие {days} дней. "
                "Береги себя; я здесь, если понадоблюсь.",
            ),
        }
    ),
    "followups.milestone_days": Plural(
        {
            "en": (
                "It's {days} day since the start date you set 🌱 However the days have gone, "
                "you kept going, and that counts.",
                "It's {days} days since the start date you set 🌱 However the days have gone, "
                "you kept going, and that counts.",
            ),
            "es": (
                "Ha pasado {days} día desde la fecha de inicio que elegiste 🌱 Hayan ido como "
                "hayan ido los días, has seguido adelante, y eso cuenta.",
                "Han pasado {days} de días desde la fecha de inicio que elegiste 🌱 Hayan ido "
                "como hayan ido los días, has seguido adelante, y eso cuenta.",
                "Han pasado {days} días desde la fecha de inicio que elegiste 🌱 Hayan ido como "
                "hayan ido los días, has seguido adelante, y eso cuenta.",
            ),
            "ru": (
                "С выбранной тобой даты начала прошёл {days} день 🌱 Как бы ни складывались эти "
                "дни, ты продолжаешь идти, и это важно.",
                "С выбранной тобой даты начала прошло {days} дня 🌱 Как бы ни складывались эти "
                "дни, ты продолжаешь идти, и это важно.",
                "С выбранной тобой даты начала прошло {days} дней 🌱 Как бы ни складывались эти "
                "дни, ты продолжаешь идти, и это важно.",
            ),
        }
    ),
    "followups.milestone_years": Plural(
        {
            "en": (
                "{years} year since the start date you set 🌱 Whatever those years held, you're "
                "still here and still working at it. That's worth marking.",
                "{years} years since the start date you set 🌱 Whatever those years held, "
                "you're still here and still working at it. That's worth marking.",
            ),
            "es": (
                "{years} año desde la fecha de inicio que elegiste 🌱 Pase lo que pase en estos "
                "años, sigues aquí y sigues en ello. Eso merece celebrarse.",
                "{years} de años desde la fecha de inicio que elegiste 🌱 Pase lo que pase en "
                "estos años, sigues aquí y sigues en ello. Eso merece celebrarse.",
                "{years} años desde la fecha de inicio que elegiste 🌱 Pase lo que pase en estos "
                "años, sigues aquí y sigues en ello. Eso merece celebrarse.",
            ),
            "ru": (
                "С выбранной тобой даты начала прошёл {years} год 🌱 Что бы ни принесли эти "
                "годы, ты по-прежнему здесь и продолжаешь работать над собой. Это стоит отметить.",
                "С выбранной тобой даты начала прошло {years} года 🌱 Что бы ни принесли эти "
                "годы, ты по-прежнему здесь и продолжаешь работать над собой. Это стоит отметить.",
                "С выбранной тобой даты начала прошло {years} лет 🌱 Что бы ни принесли эти "
                "годы, ты по-прежнему здесь и продолжаешь работать над собой. Это стоит отметить.",
            ),
        }
    ),
    "craving.scheduled": Plural(
        {
            "en": (
                "I'll check back in {minutes} minute. You've got this, one minute at a time.",
                "I'll check back in {minutes} minutes. You've got this, one minute at a time.",
            ),
            "es": (
                "Volveré a escribirte en {minutes} minuto. Tú puedes, minuto a minuto.",
                "Volveré a escribirte en {minutes} de minutos. Tú puedes, minuto a minuto.",
                "Volveré a escribirte en {minutes} minutos. Tú puedes, minuto a minuto.",
            ),
            "ru": (
                "Я напишу тебе через {minutes} минуту. У тебя получится — минута за минутой.",
                "Я напишу тебе через {minutes} минуты. У тебя получится — минута за минутой.",
                "Я напишу тебе через {minutes} минут. У тебя получится — минута за минутой.",
            ),
        }
    ),
    "peer.queued": Plural(
        {
            "en": (
                "A volunteer usually joins within about {minutes} minute. "
                "You can keep writing to me meanwhile.",
                "A volunteer usually joins within about {minutes} minutes. "
                "You can keep writing to me meanwhile.",
            ),
            "es": (
                "Normalmente una persona voluntaria se une en aproximadamente {minutes} minuto. "
                "Mientras tanto, puedes seguir escribiéndome.",
                "Normalmente una persona voluntaria se une en unos {minutes} de minutos. "
                "Mientras tanto, puedes seguir escribiéndome.",
                "Normalmente una persona voluntaria se une en unos {minutes} minutos. "
                "Mientras tanto, puedes seguir escribiéndome.",
            ),
            "ru": (
                "Обычно волонтёр подключается примерно через {minutes} минуту. "
                "Пока можешь писать мне.",
                "Обычно волонтёр подключается примерно через {minutes} минуты. "
                "Пока можешь писать мне.",
                "Обычно волонтёр подключается примерно через {minutes} минут. "
                "Пока можешь писать мне.",
            ),
        }
    ),
    "peer.still_waiting": Plural(
        {
            "en": (
                "Thank you for waiting. Our volunteers are busy right now; someone should be with "
                "you in about {minutes} minute. If things get harder meanwhile, please don't wait "
                "for us.",
                "Thank you for waiting. Our volunteers are busy right now; someone should be with "
                "you in about {minutes} minutes. If things get harder meanwhile, please don't "
                "wait for us.",
            ),
            "es": (
                "Gracias por esperar. Nuestro voluntariado está ocupado ahora mismo; alguien "
                "debería atenderte en aproximadamente {minutes} minuto. Si mientras tanto las "
                "cosas se ponen más difíciles, por favor, no nos esperes.",
                "Gracias por esperar. Nuestro voluntariado está ocupado ahora mismo; alguien "
                "debería atenderte en unos {minutes} de minutos. Si mientras tanto las cosas se "
                "ponen más difíciles, por favor, no nos esperes.",
                "Gracias por esperar. Nuestro voluntariado está ocupado ahora mismo; alguien "
                "debería atenderte en unos {minutes} minutos. Si mientras tanto las cosas se "
                "ponen más difíciles, por favor, no nos esperes.",
            ),
            "ru": (
                "Спасибо, что ждёшь. Наши волонтёры сейчас заняты; кто-то должен подключиться "
                "примерно через {minutes} минуту. Если тем временем станет тяжелее, пожалуйста, "
                "не жди нас.",
                "Спасибо, что ждёшь. Наши волонтёры сейчас заняты; кто-то должен подключиться "
                "примерно через {minutes} минуты. Если тем временем станет тяжелее, пожалуйста, "
                "не жди нас.",
                "Спасибо, что ждёшь. Наши волонтёры сейчас заняты; кто-то должен подключиться "
                "примерно через {minutes} минут. Если тем временем станет тяжелее, пожалуйста, "
                "не жди нас.",
            ),
        }
    ),
    "desk.trend.lapses": Plural(
        {
            "en": ("{count} lapse reported", "{count} lapses reported"),
            "es": (
                "{count} desliz comunicado",
                "{count} de deslices comunicados",
                "{count} deslices comunicados",
            ),
            "ru": (
                "{count} сообщение о срыве",
                "{count} сообщения о срыве",
                "{count} сообщений о срыве",
            ),
        }
    ),
    "desk.trend.count": Plural(
        {
            "en": ("{count} check-in in {days} days", "{count} check-ins in {days} days"),
            "es": (
                "{count} registro en {days} días",
                "{count} de registros en {days} días",
                "{count} registros en {days} días",
            ),
            "ru": (
                "{count} отметка за {days} дн.",
                "{count} отметки за {days} дн.",
                "{count} отметок за {days} дн.",
            ),
        }
    ),
    "desk.flag.repeat": Plural(
        {
            "en": ("{count} request in {days} days", "{count} requests in {days} days"),
            "es": (
                "{count} solicitud en {days} días",
                "{count} de solicitudes en {days} días",
                "{count} solicitudes en {days} días",
            ),
            "ru": (
                "{count} запрос за {days} дн.",
                "{count} запроса за {days} дн.",
                "{count} запросов за {days} дн.",
            ),
        }
    ),
    "desk.reping": Plural(
        {
            "en": tuple(
                "⏰ Still waiting for a volunteer: #{ticket}, priority {priority} ({reason}), "
                f"for {{minutes}} {unit}."
                for unit in ("minute", "minutes")
            ),
            "es": tuple(
                "⏰ Sigue esperando a una persona voluntaria: #{ticket}, prioridad {priority} "
                f"({{reason}}), desde hace {{minutes}} {unit}."
                for unit in ("minuto", "de minutos", "minutos")
            ),
            "ru": tuple(
                "⏰ Заявка всё ещё ждёт волонтёра: #{ticket}, приоритет {priority} ({reason}), "
                f"уже {{minutes}} {unit}."
                for unit in ("минуту", "минуты", "минут")
            ),
        }
    ),
    "desk.queue_line": Plural(  # a compact line: the abbreviation does not change
        {
            "en": ("#{ticket} · P{priority} · {reason} · {minutes} min",) * 2,
            "es": ("#{ticket} · P{priority} · {reason} · {minutes} min",) * 3,
            "ru": ("#{ticket} · P{priority} · {reason} · {minutes} мин",) * 3,
        }
    ),
    "desk.stats": Plural(
        _stats(
            {
                "en": ("The last {days} day", "The last {days} days"),
                "es": (
                    "El último {days} día",
                    "Los últimos {days} de días",
                    "Los últimos {days} días",
                ),
                "ru": (
                    "За последний {days} день",
                    "За последние {days} дня",
                    "За последние {days} дней",
                ),
            },
            _STATS_BODY,
        )
    ),
}

_KEY_LINE = re.compile(r"^([^\s#'\"][^:]*):(\s|$)")


def read_yaml(copy_dir: Path, lang: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """A language's messages in file order, and the comment lines that precede each id."""
    main = copy_dir / f"{lang}.yml"
    files = ([main] if main.is_file() else []) + sorted((copy_dir / lang).glob("*.yml"))
    messages: dict[str, str] = {}
    comments: dict[str, list[str]] = {}
    for path in files:
        raw = path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(raw) or {}
        pending: list[str] = []
        header = path == main  # the main file's opening comment is replaced by the catalog header
        for line in raw.splitlines():
            if line.startswith("#"):
                pending.append(line.lstrip("#").strip())
            elif not line.strip():
                if header and pending:
                    pending, header = [], False
            elif match := _KEY_LINE.match(line):
                comments[match.group(1)], pending, header = pending, [], False
        for key, value in loaded.items():
            if str(key) in messages:
                sys.exit(f"{key} is defined twice ({path})")
            messages[str(key)] = str(value).strip()
        missing = set(map(str, loaded)) - set(comments)
        if missing:
            sys.exit(f"{path}: ids the line scan did not see: {sorted(missing)}")
    return messages, comments


def _flags(*texts: str) -> list[str]:
    has = any(field for t in texts for _, field, _, _ in string.Formatter().parse(t) if field)
    return ["python-brace-format"] if has else []


def source_entries(
    english: dict[str, str],
) -> list[tuple[str, str | tuple[str, str]]]:
    """(message id, English) in order; plurals replace the ids they stand for, in place."""
    replaced = {old: key for key, p in PLURALS.items() for old in p.replaces}
    entries: list[tuple[str, str | tuple[str, str]]] = []
    done: set[str] = set()
    for key, value in english.items():
        key = replaced.get(key, key)
        if key in done:
            continue
        done.add(key)
        if key in PLURALS:
            one, other = PLURALS[key].forms[SOURCE]
            entries.append((key, (one, other)))
        else:
            entries.append((key, value))
    missing = set(PLURALS) - done
    if missing:
        sys.exit(f"plurals with no English YAML id to stand for: {sorted(missing)}")
    return entries


def write(path: Path, catalog: Catalog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def convert(copy_dir: Path, locale_dir: Path) -> None:
    english, comments = read_yaml(copy_dir, SOURCE)
    entries = source_entries(english)
    now = datetime.now(UTC)
    common = {
        "project": "Kindred",
        "version": "0.1",
        "copyright_holder": "Kindred contributors",
        "creation_date": now,
        "revision_date": now,
    }
    template = Catalog(domain=DOMAIN, header_comment=_comment(HEADER), **common)
    for key, value in entries:
        texts = value if isinstance(value, tuple) else (value,)
        auto = comments.get(key) or comments.get(f"{key}.one") or []
        template.add(value, context=key, auto_comments=auto, flags=_flags(*texts))
    write(locale_dir / f"{DOMAIN}.pot", template)

    langs = sorted(
        {p.stem for p in copy_dir.glob("*.yml")}
        | {p.name for p in copy_dir.iterdir() if p.is_dir()}
    )
    for lang in langs:
        if lang == SOURCE:
            continue
        translated, _ = read_yaml(copy_dir, lang)
        catalog = Catalog(
            locale=lang,
            domain=DOMAIN,
            header_comment=_comment(HEADER),
            fuzzy=False,
            last_translator="Kindred contributors",
            language_team=f"Kindred {lang}",
            **common,
        )
        for message in template:
            if not message.id:
                continue
            key = str(message.context)
            if key in PLURALS:
                forms = PLURALS[key].forms[lang]
                if len(forms) != catalog.num_plurals:
                    sys.exit(f"{lang}:{key} has {len(forms)} forms, not {catalog.num_plurals}")
                string_: str | tuple[str, ...] = forms
            else:
                string_ = translated.get(key, "")
            catalog[message.id] = Message(
                message.id,
                string_,
                context=key,
                auto_comments=message.auto_comments,
                flags=message.flags,
            )
        untranslated = [m.context for m in catalog if m.id and not m.string]
        if untranslated:
            print(f"  {lang}: untranslated {untranslated}")
        write(locale_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po", catalog)


def _comment(text: str) -> str:
    return "\n".join(f"# {line}".rstrip() for line in text.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy", type=Path, default=ROOT / "data" / "copy")
    parser.add_argument("--locale", type=Path, default=ROOT / "data" / "locale")
    args = parser.parse_args()
    convert(args.copy, args.locale)


if __name__ == "__main__":
    main()
