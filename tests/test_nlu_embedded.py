"""EmbeddedInterpreter: intents on unseen messages, entities, calibration, cache, speed, CV."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import nlu.embedded as embedded
from nlu.embedded import (
    DEFAULT_THRESHOLD,
    EmbeddedInterpreter,
    cache_key,
    cache_path,
    fit_pipeline,
    load_model,
    normalize_with_offsets,
    save_model,
)
from nlu.evaluate import cross_validate, evaluate, evaluate_file
from nlu.training_data import load_project
from nlu.understanding import FALLBACK_INTENT, INTENTS, Understanding

PROJECT = Path(__file__).resolve().parents[1] / "nlu"

# Written for this test, not copied from the training data.
HELD_OUT: dict[str, list[str]] = {
    "craving": [
        "ugh i want a drink so fucking bad right now",
        "been thinking about my dealer all night, i want to use",
    ],
    "lapse": [
        "i messed up and drank a whole bottle of wine last night",
        "used again yesterday after 2 months clean",
    ],
    "crisis_suicide": [
        "i honestly dont want to be alive anymore",
        "everyone would be better off if i just disappeared forever",
        "im thinking about killing myself tonight",
    ],
    "crisis_overdose": [
        "my mate took too much and now hes not breathing",
        "her lips are going blue and she wont wake up",
    ],
    "mood_negative": ["feeling so lonely and down today", "work was awful and im so stressed"],
    "mood_positive": [
        "hit 60 days sober today feeling proud",
        "i’m dying to see my kids this weekend",
    ],
    "request_peer": [
        "can i please talk to an actual human",
        "is there a volunteer who has been through this",
    ],
    "find_treatment": ["how do i get into a detox program", "where can i get on suboxone near me"],
    "find_meeting": ["is there an aa meeting near me tonight", "any online na meetings i can join"],
    "harm_reduction": [
        "where can i pick up a free narcan kit",
        "how do i test my stuff for fentanyl",
    ],
    "coping_help": [
        "give me a breathing exercise please",
        "how do i get through tonight without using",
    ],
    "out_of_scope": ["just killing time before my bus"],
    "bot_challenge": ["wait am i talking to a bot or a real person"],
    "delete_data": ["please delete all of my data and my account"],
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private model cache for this module."""
    return tmp_path_factory.mktemp("nlu-cache")


@pytest.fixture(scope="module")
def interpreter(cache_dir: Path) -> EmbeddedInterpreter:
    """The English interpreter, trained once for the module."""
    return EmbeddedInterpreter.for_language("en", cache_dir=cache_dir)


@pytest.mark.parametrize(
    ("intent", "text"), [(intent, text) for intent, texts in HELD_OUT.items() for text in texts]
)
def test_unseen_messages_get_the_right_intent(
    interpreter: EmbeddedInterpreter, intent: str, text: str
) -> None:
    assert interpreter.parse_sync(text).intent.name == intent


def test_parse_has_rasas_shape(interpreter: EmbeddedInterpreter) -> None:
    result = interpreter.parse_sync("craving some dope like 8/10 in the usa")
    data = json.loads(json.dumps(result.to_json()))
    assert set(data) == {"text", "intent", "intent_ranking", "entities"}
    assert data["intent"]["name"] == "craving"
    ranking = result.intent_ranking
    assert len(ranking) == 10
    assert [r.confidence for r in ranking] == sorted((r.confidence for r in ranking), reverse=True)
    assert all(r.name in INTENTS for r in ranking)
    assert 0.0 < ranking[0].confidence <= 1.0
    assert result.intent == ranking[0]
    probs = interpreter.predict_proba(result.text)
    assert set(probs) == set(INTENTS)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert {(e["entity"], e["value"]) for e in data["entities"]} == {
        ("substance", "opioids"),
        ("craving_level", "8"),
        ("country", "United States"),
    }


async def test_async_parse_matches_sync(interpreter: EmbeddedInterpreter) -> None:
    text = "where can i find an na meeting"
    assert await interpreter.parse(text) == interpreter.parse_sync(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("been fiending for some fenty all day", [("substance", "opioids", "fenty")]),
        ("want some smack so bad", [("substance", "opioids", "smack")]),
        ("craving H so bad", [("substance", "opioids", "H")]),
        (
            "got offered tina and molly at the party",
            [
                ("substance", "stimulants", "tina"),
                ("substance", "stimulants", "molly"),
            ],
        ),
        (
            "need a xan or some bars",
            [
                ("substance", "benzodiazepines", "xan"),
                ("substance", "benzodiazepines", "bars"),
            ],
        ),
        ("Smoked KUSH all day", [("substance", "cannabis", "KUSH")]),
        (
            "i want a cig and a beer",
            [
                ("substance", "nicotine", "cig"),
                ("substance", "alcohol", "beer"),
            ],
        ),
        ("craving is 8/10 tonight", [("craving_level", "8", "8/10")]),
        ("its like a seven tbh", [("craving_level", "7", "seven")]),
        ("craving level 10", [("craving_level", "10", "10")]),
        ("honestly 11/10", [("craving_level", "10", "11/10")]),
        ("9", [("craving_level", "9", "9")]),
        ("i’m in the usa", [("country", "United States", "usa")]),
        ("any rehab in the US?", [("country", "United States", "US")]),
        (
            "meetings in england or ireland",
            [
                ("country", "United Kingdom", "england"),
                ("country", "Ireland", "ireland"),
            ],
        ),
        ("can you help us", []),
        ("had ice cream and watched speed racer", []),
        ("that song is dope", []),
        ("i have 2 kids and a 6 pack of soda", []),
        ("meeting at 7pm", []),
    ],
)
def test_entities(
    interpreter: EmbeddedInterpreter, text: str, expected: list[tuple[str, str, str]]
) -> None:
    found = interpreter.parse_sync(text).entities
    assert [(e.entity, e.value, text[e.start : e.end]) for e in found] == expected


def test_entity_offsets_point_into_the_original_text(interpreter: EmbeddedInterpreter) -> None:
    text = "Sooooo I’m craaaving COKE rn 😩 like a 9/10"
    found = {e.entity: text[e.start : e.end] for e in interpreter.parse_sync(text).entities}
    assert found == {"substance": "COKE", "craving_level": "9/10"}
    norm, origin = normalize_with_offsets(text)
    assert norm.startswith("soo i'm craaving coke") and len(origin) == len(norm)


def test_empty_and_long_messages(interpreter: EmbeddedInterpreter) -> None:
    for text in ["", "   \n\t"]:
        result = interpreter.parse_sync(text)
        assert result.intent.name == FALLBACK_INTENT and result.intent.confidence == 1.0
    long_text = "blah " * 400 + "i want some dope"
    result = interpreter.parse_sync(long_text)
    assert result.intent.name in INTENTS
    # Entities come from the whole text even though the classifier reads only the start.
    assert [(e.value, long_text[e.start : e.end]) for e in result.entities] == [("opioids", "dope")]


def test_low_confidence_falls_back_but_keeps_the_ranking(interpreter: EmbeddedInterpreter) -> None:
    assert interpreter.threshold == DEFAULT_THRESHOLD
    strict = EmbeddedInterpreter(interpreter.model, interpreter.extractor, threshold=1.01)
    result = strict.parse_sync("i want a drink")
    assert result.intent.name == FALLBACK_INTENT
    assert result.source == "fallback_threshold"
    assert result.intent_ranking[0].name == "craving"
    assert result.extras["predicted"] == "craving"


def test_fast_path_equals_the_sklearn_pipeline() -> None:
    data = load_project(PROJECT)
    small = data.subset(range(0, len(data.examples), 4))
    fitted = fit_pipeline(small, grid=(("svm", 0.5),))
    texts = ["i want some dope", "where is an aa meeting", "Sooo tired 😩", "zzz unknown words"]
    docs = [
        (t, embedded._entity_markers(embedded.EntityExtractor.from_training_data(small).extract(t)))
        for t in texts
    ]
    expected = fitted.classifier.decision_function(fitted.transform(docs))
    # The model folds the word block's weight into its coefficients.
    got = np.array([fitted.model.decision(t, m) for t, m in docs])
    assert np.allclose(got, expected, atol=1e-9)


def test_threads_can_parse_concurrently(interpreter: EmbeddedInterpreter) -> None:
    texts = [t for texts in HELD_OUT.values() for t in texts] * 5
    expected = [interpreter.parse_sync(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(interpreter.parse_sync, texts)) == expected


def test_second_load_uses_the_cache(
    interpreter: EmbeddedInterpreter, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("should have loaded from cache")

    monkeypatch.setattr(embedded, "train_model", no_training)
    again = EmbeddedInterpreter.for_language("en", cache_dir=cache_dir)
    assert again.loaded_from_cache
    text = "how do i get narcan"
    assert again.parse_sync(text) == interpreter.parse_sync(text)


def test_corrupt_or_stale_cache_is_retrained(
    interpreter: EmbeddedInterpreter, tmp_path: Path
) -> None:
    data = load_project(PROJECT)
    key = cache_key(data.data_hash, "en")
    path = cache_path(tmp_path, "en", key)
    path.write_bytes(b"not a model")
    fresh = EmbeddedInterpreter.for_language("en", cache_dir=tmp_path)
    assert not fresh.loaded_from_cache
    assert load_model(path, key).classes == interpreter.model.classes  # rewritten, valid
    save_model(interpreter.model, path, "some-other-key")  # same file, other data
    assert not EmbeddedInterpreter.for_language("en", cache_dir=tmp_path).loaded_from_cache
    assert EmbeddedInterpreter.for_language("en", cache_dir=tmp_path).loaded_from_cache
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_unknown_language_lists_the_available_ones() -> None:
    with pytest.raises(LookupError, match="available: en"):
        EmbeddedInterpreter.for_language("xx")


def test_parse_is_fast(interpreter: EmbeddedInterpreter) -> None:
    texts = load_project(PROJECT).texts[::5]
    for text in texts[:50]:
        interpreter.parse_sync(text)
    timings = []
    for text in texts * 2:
        start = time.perf_counter()
        interpreter.parse_sync(text)
        timings.append((time.perf_counter() - start) * 1000)
    p50 = statistics.median(timings)
    print(f"embedded parse p50 = {p50:.3f} ms over {len(timings)} messages")
    assert p50 <= 1.0


def test_evaluate_reports_like_rasa(interpreter: EmbeddedInterpreter, tmp_path: Path) -> None:
    report = evaluate(interpreter.parse_sync, [("i want a drink", "craving"), ("hi", "deny")])
    assert report["per_intent"]["craving"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 1,
    }
    assert report["accuracy"] == 0.5
    assert report["confusions"] == [{"intent": "deny", "predicted": "greet", "count": 1}]
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        'version: "3.1"\nnlu:\n- intent: find_meeting\n  examples: |\n'
        "    - any aa meetings in [ireland](country)\n",
        encoding="utf-8",
    )
    file_report = evaluate_file(interpreter.parse_sync, test_file)
    assert file_report["macro"]["f1"] == 1.0
    assert file_report["entities"]["country"]["recall"] == 1.0
    json.dumps(file_report)


def test_five_fold_cross_validation() -> None:
    result = cross_validate(PROJECT, folds=5, seed=13)
    json.dumps(result)
    print(
        f"5-fold CV macro-F1 = {result['macro_f1_mean']:.4f} ± {result['macro_f1_std']:.4f} "
        f"(per fold {[f['macro_f1'] for f in result['per_fold']]}), "
        f"accuracy {result['accuracy_mean']:.4f}"
    )
    assert len(result["per_fold"]) == 5
    assert result["macro_f1_mean"] >= 0.85


def test_understanding_round_trips_through_json(interpreter: EmbeddedInterpreter) -> None:
    result = interpreter.parse_sync("can u remind me at 9 tonight")
    assert Understanding.from_json(result.to_json()).intent.name == result.intent.name


def test_parse_in_running_event_loop(interpreter: EmbeddedInterpreter) -> None:
    async def many() -> list[str]:
        results = await asyncio.gather(*(interpreter.parse(t) for t in ["hi", "bye", "thanks"]))
        return [r.intent.name for r in results]

    assert asyncio.run(many()) == ["greet", "goodbye", "thanks"]
