"""Spanish NLU: the Rasa project, the embedded interpreter, entities, CV and the safety lexicon.

The held-out sentences below were written for this test and are not in the training data (a test
checks that). The safety regression sets live in tests/safety/es_*.tsv.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nlu.embedded import EmbeddedInterpreter, project_dir_for
from nlu.evaluate import cross_validate
from nlu.normalize import load_lexicon, normalize
from nlu.safety import OVERDOSE, SUICIDE, SafetyNet
from nlu.training_data import load_project
from nlu.understanding import INTENTS, IntentScore, Understanding
from tests.test_safety_sets import regression_rows

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "nlu" / "languages" / "es"
ENGLISH = ROOT / "nlu"

MIN_EXAMPLES = 50
# The intents the bot must never get wrong get more examples.
MIN_EXAMPLES_KEY = 90
KEY_INTENTS = (
    "craving",
    "lapse",
    "crisis_suicide",
    "crisis_overdose",
    "mood_negative",
    "request_peer",
    "find_treatment",
    "find_meeting",
    "harm_reduction",
    "coping_help",
)
MIN_CV_MACRO_F1 = 0.80
CANONICAL_SUBSTANCES = {
    "alcohol",
    "opioids",
    "stimulants",
    "cannabis",
    "benzodiazepines",
    "nicotine",
}

# Written for this test, not copied from the training data: how people text at night in Spain,
# Mexico, Argentina and elsewhere (missing accents, voseo, slang).
HELD_OUT: dict[str, list[str]] = {
    "greet": ["holaa, hay alguien por aca?", "buen día! cómo estás"],
    "goodbye": ["bueno me voy a acostar, hasta mañana", "chau, nos hablamos otro día"],
    "thanks": [
        "muchas gracias por escucharme esta noche",
        "mil gracias de verdad, me ayudaste un montón",
    ],
    "affirm": ["sí, dale", "claro que sí, hagámoslo"],
    "deny": ["no, gracias, ahora no", "nop, no hace falta"],
    "craving": [
        "tengo unas ganas de tomarme unas chelas que no puedo",
        "se me antoja un montón la merca hoy, como un 8",
        "vos sabés las ganas que tengo de fumar un faso ahora",
    ],
    "lapse": [
        "anoche volví a tomar después de 3 meses",
        "la cagué, me fumé un porro ayer",
        "me metí perico el finde, perdón",
    ],
    "mood_positive": [
        "hoy cumplí 45 días sin tomar y me siento orgullosa",
        "me muero de ganas de ver a mis hijos el domingo",
    ],
    "mood_negative": [
        "me siento muy sola y triste esta noche",
        "estoy re estresado con el laburo y no duermo",
    ],
    "crisis_suicide": [
        "ya no quiero vivir, estoy harto de todo",
        "estoy pensando en matarme esta noche",
        "todos estarían mejor si yo no estuviera",
    ],
    "crisis_overdose": [
        "mi amigo se metió heroína y no respira",
        "tomó muchas pastillas y no lo puedo despertar",
    ],
    "request_peer": [
        "quiero hablar con una persona de verdad, no con un bot",
        "hay algún voluntario que haya pasado por esto?",
    ],
    "find_treatment": [
        "cómo hago para internarme en un centro de rehabilitación",
        "dónde me dan tratamiento con metadona en méxico",
    ],
    "find_meeting": [
        "hay alguna reunión de alcohólicos anónimos esta noche?",
        "busco un grupo de narcóticos anónimos online",
    ],
    "harm_reduction": [
        "dónde consigo naloxona gratis",
        "es peligroso mezclar clonazepam con alcohol?",
    ],
    "coping_help": [
        "qué hago para aguantar las ganas de tomar esta noche",
        "dame un ejercicio de respiración para calmarme",
    ],
    "start_checkin": ["quiero hacer mi registro de hoy", "empecemos el check in diario"],
    "set_reminder": [
        "recuérdame mañana a las 8 que tengo reunión",
        "escríbeme en dos horas para ver cómo sigo",
    ],
    "stop_reminders": [
        "ya no me mandes recordatorios por favor",
        "deja de escribirme por unos días",
    ],
    "delete_data": ["quiero que borren toda mi información", "elimina mi cuenta y mis datos porfa"],
    "privacy_question": ["alguien más puede leer lo que te escribo?", "esto es anónimo de verdad?"],
    "bot_challenge": ["eres un robot o una persona de verdad?", "me está contestando una máquina?"],
    "out_of_scope": [
        "cuál es la capital de italia",
        "jaja me muero de risa con tu perro",
        "estoy matando el tiempo antes del partido",
    ],
}


CRISIS = regression_rows("es_crisis.tsv")
HARD_NEGATIVE = regression_rows("es_hard_negative.tsv")


@pytest.fixture(scope="module")
def interpreter(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedInterpreter:
    """The Spanish interpreter, trained once for the module into a private cache."""
    return EmbeddedInterpreter.for_language("es", cache_dir=tmp_path_factory.mktemp("nlu-es"))


@pytest.fixture(scope="module")
def net() -> SafetyNet:
    """The Spanish safety net (built once)."""
    return SafetyNet.for_language("es")


# ---- the Rasa project --------------------------------------------------------------------------


def test_the_spanish_project_is_where_the_interpreter_looks() -> None:
    assert project_dir_for("es") == PROJECT


def test_config_and_domain_match_the_english_project() -> None:
    config = yaml.safe_load((PROJECT / "config.yml").read_text(encoding="utf-8"))
    english = yaml.safe_load((ENGLISH / "config.yml").read_text(encoding="utf-8"))
    assert config["language"] == "es"
    assert config["pipeline"] == english["pipeline"]
    domain = yaml.safe_load((PROJECT / "domain.yml").read_text(encoding="utf-8"))
    english_domain = yaml.safe_load((ENGLISH / "domain.yml").read_text(encoding="utf-8"))
    assert domain["intents"] == english_domain["intents"]
    assert set(domain["intents"]) == set(INTENTS)
    assert domain["entities"] == ["substance", "craving_level", "country"]


def test_every_intent_has_its_minimum_of_examples() -> None:
    data = load_project(PROJECT)
    counts = data.counts()
    print(f"\nSpanish examples: {len(data.examples)}; per intent: {dict(sorted(counts.items()))}")
    assert set(counts) == set(INTENTS)
    short = {i: n for i, n in counts.items() if n < MIN_EXAMPLES}
    assert not short, short
    short_key = {i: counts[i] for i in KEY_INTENTS if counts[i] < MIN_EXAMPLES_KEY}
    assert not short_key, short_key
    assert not data.warnings


def test_training_data_is_clean() -> None:
    data = load_project(PROJECT)
    seen: dict[str, str] = {}
    clashes = []
    for example in data.examples:
        key = example.text.lower()
        if key in seen and seen[key] != example.intent:
            clashes.append((example.text, seen[key], example.intent))
        seen[key] = example.intent
    assert not clashes, clashes[:10]
    for example in data.examples:
        for span in example.entities:
            if span.entity == "substance":
                assert span.value in CANONICAL_SUBSTANCES, (example.text, span.value)
            elif span.entity == "country":
                assert span.value[0].isupper(), (example.text, span.value)  # English name
            else:
                assert span.entity == "craving_level" and 0 <= int(span.value) <= 10
    # Synonyms map street names to the canonical English values.
    assert data.resolve("perico") == "stimulants"
    assert data.resolve("chela") == "alcohol"
    assert data.resolve("méxico") == "Mexico"
    assert data.resolve("eeuu") == "United States"


def test_held_out_sentences_are_not_training_examples() -> None:
    texts = {ex.text.lower() for ex in load_project(PROJECT).examples}
    copied = [t for ts in HELD_OUT.values() for t in ts if t.lower() in texts]
    assert not copied


# ---- the embedded interpreter -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "text"), [(intent, text) for intent, texts in HELD_OUT.items() for text in texts]
)
def test_unseen_spanish_messages_get_the_right_intent(
    interpreter: EmbeddedInterpreter, intent: str, text: str
) -> None:
    assert interpreter.parse_sync(text).intent.name == intent


def test_the_interpreter_knows_every_intent(interpreter: EmbeddedInterpreter) -> None:
    assert interpreter.language == "es"
    assert set(interpreter.intents) == set(INTENTS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ganas de perico, como un 8",
            [("substance", "stimulants", "perico"), ("craving_level", "8", "8")],
        ),
        (
            "me fumé un porro y dos chelas",
            [("substance", "cannabis", "porro"), ("substance", "alcohol", "chelas")],
        ),
        ("quiero chiva", [("substance", "opioids", "chiva")]),
        ("quiero heroína", [("substance", "opioids", "heroína")]),
        ("ganas de fentanilo", [("substance", "opioids", "fentanilo")]),
        ("Me tomé un RIVOTRIL", [("substance", "benzodiazepines", "RIVOTRIL")]),
        (
            "clonas y pisto",
            [("substance", "benzodiazepines", "clonas"), ("substance", "alcohol", "pisto")],
        ),
        ("ganas de un pucho", [("substance", "nicotine", "pucho")]),
        ("ganas de vapear", [("substance", "nicotine", "vapear")]),
        ("me fumé un faso", [("substance", "cannabis", "faso")]),
        (
            "me metí merca y piedra",
            [("substance", "stimulants", "merca"), ("substance", "stimulants", "piedra")],
        ),
        (
            "ando con ganas de farlopa 9/10",
            [("substance", "stimulants", "farlopa"), ("craving_level", "9", "9/10")],
        ),
        (
            "antojo de birra, un 7 de 10",
            [("substance", "alcohol", "birra"), ("craving_level", "7", "7 de 10")],
        ),
        ("ganas de tomar nivel 9", [("craving_level", "9", "9")]),
        ("le doy un 6", [("craving_level", "6", "6")]),
        ("10", [("craving_level", "10", "10")]),
        ("hay reuniones de aa en México?", [("country", "Mexico", "México")]),
        ("rehab en EEUU", [("country", "United States", "EEUU")]),
        ("busco ayuda en estados unidos", [("country", "United States", "estados unidos")]),
        ("vivo en españa", [("country", "Spain", "españa")]),
        (
            "hay grupos en argentina o en colombia?",
            [("country", "Argentina", "argentina"), ("country", "Colombia", "colombia")],
        ),
        # Everyday Spanish that only looks like an entity.
        ("mi meta es no tomar", []),
        ("como se usa la naloxona", []),
        ("la reunión es a las 8 en el centro", []),
        ("tengo 2 hijos", []),
    ],
)
def test_spanish_entities(
    interpreter: EmbeddedInterpreter, text: str, expected: list[tuple[str, str, str]]
) -> None:
    found = interpreter.parse_sync(text).entities
    assert [(e.entity, e.value, text[e.start : e.end]) for e in found] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ganas de tomar, un diez", [("craving_level", "10", "diez")]),
        ("como un siete", [("craving_level", "7", "siete")]),
        ("nivel ocho", [("craving_level", "8", "ocho")]),
        ("ocho de diez", [("craving_level", "8", "ocho")]),
        ("unas ganas de nueve", [("craving_level", "9", "nueve")]),
        ("ya van dos dias", []),
        ("a las cinco", []),
        ("en cinco minutos", []),
    ],
)
def test_spanish_number_words_as_craving_levels(
    interpreter: EmbeddedInterpreter, text: str, expected: list[tuple[str, str, str]]
) -> None:
    found = interpreter.parse_sync(text).entities
    assert [(e.entity, e.value, text[e.start : e.end]) for e in found] == expected


def test_five_fold_cross_validation() -> None:
    result = cross_validate(PROJECT, folds=5, seed=13)
    worst = sorted(result["pooled"]["per_intent"].items(), key=lambda kv: kv[1]["f1"])[:5]
    print(
        f"\nSpanish 5-fold CV macro-F1 = {result['macro_f1_mean']:.4f} "
        f"± {result['macro_f1_std']:.4f} (per fold {[f['macro_f1'] for f in result['per_fold']]}), "
        f"accuracy {result['accuracy_mean']:.4f}; weakest: "
        + ", ".join(f"{name} {scores['f1']:.2f}" for name, scores in worst)
    )
    assert len(result["per_fold"]) == 5
    assert result["macro_f1_mean"] >= MIN_CV_MACRO_F1


# ---- the safety net -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "me muero de ganas de ver a mis hijos",
        "me muero de risa",
        "me muero de hambre",
        "me muero de sueño",
        "me muero de calor",
        "me muero de vergüenza",
        "me quiero morir de la vergüenza",
        "estoy matando el tiempo",
        "me mata el trabajo",
        "me mata este examen",
        "este trabajo me está matando",
        "me mata de risa",
        "sobredosis de netflix este finde",
        "escuadrón suicida",
        "cómo se usa la naloxona?",
        "me corté el pelo",
    ],
)
def test_figures_of_speech_do_not_fire(net: SafetyNet, text: str) -> None:
    assert not net.assess(text).is_crisis


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("me muero de risa. ", ""),
        ("ayer recaí. ", ""),
        ("", ". me mata el trabajo jaja"),
        ("", ". cómo se usa la naloxona?"),
        ("", ". no soy suicida eh"),
    ],
)
def test_a_guard_in_another_sentence_never_silences_a_crisis(
    net: SafetyNet, before: str, after: str
) -> None:
    missed = [text for _, text in CRISIS if not net.assess(before + text + after).is_crisis]
    assert not missed, missed[:10]


def test_a_guard_cancels_only_the_match_it_overlaps(net: SafetyNet) -> None:
    assert not net.assess("me muero de ganas de ver a mis hijos").is_crisis
    verdict = net.assess("me muero de ganas de ver a mis hijos pero la verdad me quiero morir")
    assert verdict.intent == SUICIDE
    assert not net.assess("mi hermano murió de una sobredosis hace años y lo extraño").is_crisis
    verdict = net.assess("mi hermano murió de sobredosis hace años y ahora mi primo no respira")
    assert verdict.intent == OVERDOSE


def test_ongoing_overdose_beats_suicide(net: SafetyNet) -> None:
    verdict = net.assess("me quiero morir, me tomé todo y ahora no puedo respirar")
    assert verdict.intent == OVERDOSE and verdict.also == SUICIDE
    verdict = net.assess("me tomé todas las pastillas para no despertar")
    assert verdict.intent == SUICIDE


def test_prefilter_gives_the_same_answers_as_running_every_rule(net: SafetyNet) -> None:
    reference = SafetyNet(load_lexicon("es"), lang="es", prefilter=False)
    for _, text in CRISIS + HARD_NEGATIVE:
        fast, slow = net.assess(text), reference.assess(text)
        assert (fast.intent, fast.rule, fast.guarded) == (slow.intent, slow.rule, slow.guarded), (
            text
        )


def test_the_safety_net_overrides_the_spanish_classifier(
    net: SafetyNet, interpreter: EmbeddedInterpreter
) -> None:
    understood = Understanding(
        text="neta ya no quiero seguir aquí",
        intent=IntentScore("mood_negative", 0.8),
        intent_ranking=(IntentScore("mood_negative", 0.8),),
    )
    checked = net.check(understood)
    assert checked.intent == IntentScore(SUICIDE, 1.0)
    assert checked.extras["safety"]["lang"] == "es"
    calm = interpreter.parse_sync("me muero de ganas de una birra")
    assert net.check(calm) is calm


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Me kiero MATAR xq nose pa q sigo", "me quiero matar por que no se para que sigo"),
        ("ya no puedo más, tío", "ya no puedo mas tio"),
        ("me hice daño 😢", "me hice dano"),
        ("jajajaja me muero 😂", "jaja me muero jaja"),
        ("toy re mal x favor ayudame", "estoy re mal por favor ayudame"),
        ("m quiero morir", "me quiero morir"),
        ("tomé 20pastillas de clonazepan", "tome 20 pastillas de clonazepam"),
        ("está inconciente!!", "esta inconsciente ."),
    ],
)
def test_spanish_normalisation(raw: str, expected: str) -> None:
    assert normalize(raw, "es") == expected
