"""Russian NLU: the Rasa project, the embedded interpreter, entities, CV, and the safety net.

The held-out sentences below were written for this test and are not in the training data (a test
checks that). The safety regression sets are tests/safety/ru_crisis.tsv and ru_hard_negative.tsv.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from nlu.embedded import EmbeddedInterpreter, project_dir_for
from nlu.evaluate import cross_validate
from nlu.normalize import Normalizer, load_lexicon
from nlu.safety import OVERDOSE, SUICIDE, SafetyNet
from nlu.training_data import TrainingData, load_project
from nlu.understanding import INTENTS, IntentScore, Understanding
from tests.test_safety_sets import regression_rows

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "nlu" / "languages" / "ru"
MIN_EXAMPLES = 50
# Intents people reach for in a hard moment get more examples.
KEY_INTENTS = {
    "craving": 100,
    "lapse": 100,
    "crisis_suicide": 100,
    "crisis_overdose": 100,
    "mood_negative": 100,
    "request_peer": 80,
    "find_treatment": 80,
    "find_meeting": 80,
    "harm_reduction": 80,
    "coping_help": 80,
}
SUBSTANCES = {"alcohol", "opioids", "stimulants", "cannabis", "benzodiazepines", "nicotine"}
MIN_CV_MACRO_F1 = 0.80

# Written for this test, not copied from the training data.
HELD_OUT: dict[str, list[str]] = {
    "greet": ["привет, есть кто не спит сейчас", "здравствуйте, я тут первый раз"],
    "goodbye": ["ладно, пойду спать, до завтра", "все, давай, спокойной ночи"],
    "thanks": ["спасибо большое, мне правда стало легче", "спс что ответил так быстро"],
    "affirm": ["да, давай попробуем", "ага, хорошо"],
    "deny": ["нет, спасибо, не сейчас", "неа, не хочу сейчас этим заниматься"],
    "craving": ["так хочется бухнуть что руки трясутся", "тянет на меф уже весь вечер"],
    "lapse": [
        "вчера опять напился, хотя держался две недели",
        "я сорвалась и нюхнула фен на вечеринке",
    ],
    "mood_positive": [
        "сегодня 50 дней без алкоголя, горжусь собой",
        "день прошел спокойно, тяги почти не было",
    ],
    "mood_negative": [
        "мне очень одиноко и грустно сегодня",
        "на работе все плохо, я вымотана и злюсь",
    ],
    "crisis_suicide": [
        "я больше не хочу жить, все бессмысленно",
        "думаю покончить с собой сегодня ночью",
        "всем будет лучше если меня не станет",
    ],
    "crisis_overdose": [
        "мой друг не дышит после дозы героина",
        "у брата передоз, он посинел и не просыпается",
    ],
    "request_peer": [
        "можно поговорить с живым волонтером",
        "хочу пообщаться с человеком который сам бросал",
    ],
    "find_treatment": [
        "где можно анонимно лечь в наркологию",
        "хочу на заместительную терапию метадоном",
    ],
    "find_meeting": [
        "есть ли собрания анонимных алкоголиков на русском онлайн",
        "где ближайшая группа ан сегодня",
    ],
    "harm_reduction": ["где бесплатно достать налоксон", "можно ли мешать метадон с алкоголем"],
    "coping_help": [
        "что делать чтобы не сорваться сегодня вечером",
        "дай какое нибудь упражнение чтобы успокоиться",
    ],
    "start_checkin": ["давай отметим как прошел мой день", "хочу сделать вечерний чекин"],
    "set_reminder": ["напиши мне завтра в 8 утра", "напомни мне про собрание в четверг"],
    "stop_reminders": ["перестань присылать напоминания", "пиши мне пореже пожалуйста"],
    "delete_data": ["удалите пожалуйста всю мою историю и аккаунт", "сотри все мои записи"],
    "privacy_question": [
        "мои сообщения кто то читает кроме бота",
        "полиция может узнать что я тут пишу",
    ],
    "bot_challenge": [
        "я сейчас с ботом переписываюсь или с живым человеком",
        "ты настоящий человек?",
    ],
    "out_of_scope": ["посоветуй хороший сериал на вечер", "просто убиваю время до поезда"],
}

# Figures of speech and everyday talk that must not become a crisis after the whole pipeline
# (classifier, then the safety net), with the intent they should get.
FIGURES_OF_SPEECH: list[tuple[str, str]] = [
    ("out_of_scope", "умираю со смеху с этого видео"),
    ("out_of_scope", "надо как то убить время до встречи"),
    ("out_of_scope", "мой телефон умер окончательно"),
    ("mood_negative", "устала до смерти на смене"),
    ("craving", "до смерти хочется пива"),
    ("out_of_scope", "у меня есть план на выходные поехать на рыбалку"),
]


CRISIS = regression_rows("ru_crisis.tsv")
HARD_NEGATIVE = regression_rows("ru_hard_negative.tsv")


@pytest.fixture(scope="module")
def data() -> TrainingData:
    """The Russian training data."""
    return load_project(PROJECT)


@pytest.fixture(scope="module")
def interpreter(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedInterpreter:
    """The Russian embedded interpreter, trained once into a private cache."""
    return EmbeddedInterpreter.for_language("ru", cache_dir=tmp_path_factory.mktemp("ru-cache"))


@pytest.fixture(scope="module")
def net() -> SafetyNet:
    """The Russian safety net."""
    return SafetyNet.for_language("ru")


# ---- the Rasa project --------------------------------------------------------------------------


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_project_is_a_rasa_project_like_the_english_one() -> None:
    assert project_dir_for("ru") == PROJECT
    config, english = _yaml(PROJECT / "config.yml"), _yaml(ROOT / "nlu" / "config.yml")
    assert config["language"] == "ru"
    assert config["pipeline"] == english["pipeline"]
    domain, english_domain = _yaml(PROJECT / "domain.yml"), _yaml(ROOT / "nlu" / "domain.yml")
    assert domain["intents"] == english_domain["intents"]
    assert set(domain["intents"]) == set(INTENTS)
    assert domain["entities"] == ["substance", "craving_level", "country"]


def test_every_intent_has_its_minimum(data: TrainingData) -> None:
    counts = data.counts()
    print(f"\nru examples: {len(data.examples)}; per intent: {dict(sorted(counts.items()))}")
    assert set(counts) == set(INTENTS)
    short = {
        intent: n
        for intent, n in counts.items()
        if n < max(MIN_EXAMPLES, KEY_INTENTS.get(intent, 0))
    }
    assert not short
    assert not data.warnings


def test_annotations_use_canonical_values(data: TrainingData) -> None:
    directory = {_yaml(path)["country"] for path in (ROOT / "data" / "directory").glob("*.yml")}
    seen: dict[str, set[str]] = {}
    for example in data.examples:
        assert "[" not in example.text and "](" not in example.text, example.text
        for span in example.entities:
            seen.setdefault(span.entity, set()).add(span.value)
            assert example.text[span.start : span.end] == span.text
    assert seen["substance"] == SUBSTANCES
    assert seen["country"] <= directory
    assert seen["craving_level"] <= {str(n) for n in range(11)}
    # Lookups and synonyms resolve to the same canonical values.
    for term in data.lookups["substance"]:
        assert data.resolve(term) in SUBSTANCES, term
    for term in data.lookups["country"]:
        assert data.resolve(term) in directory, term


def test_no_message_is_taught_as_two_intents(data: TrainingData) -> None:
    intents_of: dict[str, set[str]] = {}
    for example in data.examples:
        intents_of.setdefault(example.text.lower(), set()).add(example.intent)
    assert not {text: i for text, i in intents_of.items() if len(i) > 1}


def test_held_out_sentences_are_not_training_data(data: TrainingData) -> None:
    training = {text.lower() for text in data.texts}
    assert not [t for texts in HELD_OUT.values() for t in texts if t.lower() in training]


# ---- the embedded interpreter ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "text"), [(intent, text) for intent, texts in HELD_OUT.items() for text in texts]
)
def test_unseen_russian_messages_get_the_right_intent(
    interpreter: EmbeddedInterpreter, intent: str, text: str
) -> None:
    assert interpreter.language == "ru"
    assert interpreter.parse_sync(text).intent.name == intent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("хочу водки", [("substance", "alcohol", "водки")]),
        ("хочу герыча", [("substance", "opioids", "герыча")]),
        ("тянет на соль", [("substance", "stimulants", "соль")]),
        ("нюхнул мефа", [("substance", "stimulants", "мефа")]),
        ("хочу шмали", [("substance", "cannabis", "шмали")]),
        ("феназепам кончился", [("substance", "benzodiazepines", "феназепам")]),
        ("колёса закончились", [("substance", "benzodiazepines", "колёса")]),
        ("дай сигу", [("substance", "nicotine", "сигу")]),
        (
            "Хочу ВОДКИ и сиги",
            [("substance", "alcohol", "ВОДКИ"), ("substance", "nicotine", "сиги")],
        ),
        ("тяга 8/10", [("craving_level", "8", "8/10")]),
        ("тяга 7 из 10", [("craving_level", "7", "7 из 10")]),
        ("тянет на 9", [("craving_level", "9", "9")]),
        ("9 баллов тянет", [("craving_level", "9", "9")]),
        ("8", [("craving_level", "8", "8")]),
        ("я в россии", [("country", "Russia", "россии")]),
        ("ищу аа в сша", [("country", "United States", "сша")]),
        (
            "собрания в германии или испании",
            [("country", "Germany", "германии"), ("country", "Spain", "испании")],
        ),
        ("живу в новой зеландии", [("country", "New Zealand", "новой зеландии")]),
        (
            "в рф есть метадон",
            [("country", "Russia", "рф"), ("substance", "opioids", "метадон")],
        ),
        ("у меня есть план на завтра", []),
        ("7 дней не пью", []),
        ("напомни в 7 вечера", []),
    ],
)
def test_russian_entities(
    interpreter: EmbeddedInterpreter, text: str, expected: list[tuple[str, str, str]]
) -> None:
    found = interpreter.parse_sync(text).entities
    assert [(e.entity, e.value, text[e.start : e.end]) for e in found] == expected


def test_five_fold_cross_validation() -> None:
    report = cross_validate(PROJECT, folds=5)
    worst = sorted(report["pooled"]["per_intent"].items(), key=lambda kv: kv[1]["f1"])[:5]
    print(
        f"\nru 5-fold CV macro-F1 = {report['macro_f1_mean']:.4f} "
        f"(std {report['macro_f1_std']:.4f}, accuracy {report['accuracy_mean']:.4f}, "
        f"{report['examples']} examples); weakest: "
        + ", ".join(f"{name} {scores['f1']:.2f}" for name, scores in worst)
    )
    assert report["macro_f1_mean"] >= MIN_CV_MACRO_F1


# ---- the safety net ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("телефон сдох. ", ""),
        ("умираю со смеху. ", ""),
        ("вчера сорвался. ", ""),
        ("", ". этот мем меня убил"),
        ("", ". кстати где взять налоксон?"),
        ("", ". но я не суицидальный"),
    ],
)
def test_guards_in_another_sentence_never_silence_a_crisis(
    net: SafetyNet, before: str, after: str
) -> None:
    missed = [text for _, text in CRISIS if not net.assess(before + text + after).is_crisis]
    assert not missed, missed[:10]


def test_prefilter_gives_the_same_answers_as_running_every_rule(net: SafetyNet) -> None:
    reference = SafetyNet(load_lexicon("ru"), lang="ru", prefilter=False)
    for _, text in CRISIS + HARD_NEGATIVE:
        assert net.assess(text).intent == reference.assess(text).intent, text


def test_lexicon_overrides_a_russian_classifier_answer(net: SafetyNet) -> None:
    top = IntentScore("mood_negative", 0.9)
    understanding = Understanding(text="не хочу больше жить", intent=top, intent_ranking=(top,))
    checked = net.check(understanding)
    assert checked.intent.name == SUICIDE
    assert checked.extras["safety"]["lang"] == "ru"
    assert "жить" not in repr(checked.extras)


def test_the_whole_pipeline_reaches_crisis_and_leaves_figures_of_speech(
    interpreter: EmbeddedInterpreter, net: SafetyNet
) -> None:
    crisis = [
        t
        for _, t in CRISIS
        if net.check(interpreter.parse_sync(t)).intent.name not in (SUICIDE, OVERDOSE)
    ]
    assert not crisis
    wrong = [
        (want, net.check(interpreter.parse_sync(text)).intent.name, text)
        for want, text in FIGURES_OF_SPEECH
        if net.check(interpreter.parse_sync(text)).intent.name != want
    ]
    assert not wrong


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Я ХОЧУ УМЕРЕТЬ!!! Всё...", "я хочу умереть . все"),
        ("хочуууу умереееть", "хочу умереть"),
        ("ёлка Ёжик е\u0308ж", "елка ежик еж"),
        ("кто-нибудь помогите, он не дышит?", "кто нибудь помогите он не дышит ?"),
        ("у меня с*ицидальные мысли", "у меня суицидальные мысли"),
        ("я думаю о с_у_и_ц_и_д_е", "я думаю о суициде"),
        ("щас нехочу жить", "сейчас не хочу жить"),
        ("ne hochu zhit", "не хочу жить"),
        ("ya ub'yu sebya", "я убью себя"),
        ("кто-нить дома?", "кто нибудь дома ?"),
    ],
)
def test_russian_normalisation(raw: str, expected: str) -> None:
    assert Normalizer(load_lexicon("ru").get("normalize") or {})(raw) == expected


def test_russian_patterns_are_written_for_normalised_text() -> None:
    lexicon = load_lexicon("ru")
    assert lexicon["language"] == "ru"
    patterns = [str(rule["re"]) for rules in lexicon["intents"].values() for rule in rules]
    patterns += [str(guard["re"]) for guard in lexicon["guards"]]
    # Patterns are written against normalised Russian text: lowercase, "е" for "ё".
    assert not [p for p in patterns if "ё" in p or re.search(r"[А-ЯЁ]", p)]
