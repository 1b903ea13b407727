"""The Rasa project YAML: valid, complete, consistently annotated; and its loader."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from nlu.training_data import (
    TrainingData,
    TrainingDataError,
    load_nlu_file,
    load_project,
    parse_annotated,
)
from nlu.understanding import INTENTS

PROJECT = Path(__file__).resolve().parents[1] / "nlu"
IMPORTANT = {
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
}
SUBSTANCES = {"alcohol", "opioids", "stimulants", "cannabis", "benzodiazepines", "nicotine"}
LEVELS = {str(n) for n in range(11)}


@pytest.fixture(scope="module")
def data() -> TrainingData:
    """The English project's training data."""
    return load_project(PROJECT)


def _countries(data: TrainingData) -> set[str]:
    """Canonical country names: what the country lookup entries resolve to."""
    return {data.resolve(term) for term in data.lookups["country"]}


def test_every_file_is_rasa_3_1_yaml() -> None:
    for path in [PROJECT / "domain.yml", *sorted((PROJECT / "data").glob("*.yml"))]:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["version"] == "3.1", path


def test_config_has_the_small_data_pipeline() -> None:
    config = yaml.safe_load((PROJECT / "config.yml").read_text(encoding="utf-8"))
    assert config["language"] == "en"
    assert config["recipe"] == "default.v1"
    assert config["assistant_id"]
    names = [step["name"] for step in config["pipeline"]]
    assert names == [
        "WhitespaceTokenizer",
        "RegexFeaturizer",
        "LexicalSyntacticFeaturizer",
        "CountVectorsFeaturizer",
        "CountVectorsFeaturizer",
        "DIETClassifier",
        "EntitySynonymMapper",
        "FallbackClassifier",
    ]
    diet = config["pipeline"][5]
    assert diet["constrain_similarities"] is True
    assert 0.3 <= config["pipeline"][-1]["threshold"] <= 0.5


def test_domain_lists_all_intents_and_entities() -> None:
    domain = yaml.safe_load((PROJECT / "domain.yml").read_text(encoding="utf-8"))
    assert tuple(domain["intents"]) == INTENTS
    assert set(domain["entities"]) == {"substance", "craving_level", "country"}


def test_all_intents_have_their_minimum(data: TrainingData) -> None:
    counts = data.counts()
    assert set(counts) == set(INTENTS)
    for intent in INTENTS:
        minimum = 60 if intent in IMPORTANT else 45
        assert counts[intent] >= minimum, (intent, counts[intent])
    assert not data.warnings


def test_no_example_is_duplicated(data: TrainingData) -> None:
    def key(text: str) -> str:
        return re.sub(r"\s+", " ", text.lower().replace("’", "'")).strip()

    seen = Counter(key(ex.text) for ex in data.examples)
    assert [t for t, n in seen.items() if n > 1] == []


def test_annotated_entity_values_are_canonical(data: TrainingData) -> None:
    countries = _countries(data)
    allowed = {"substance": SUBSTANCES, "craving_level": LEVELS, "country": countries}
    annotated = Counter()
    for ex in data.examples:
        for span in ex.entities:
            assert span.entity in allowed, (ex.text, span)
            assert span.value in allowed[span.entity], (ex.text, span)
            assert ex.text[span.start : span.end] == span.text
            annotated[span.entity] += 1
    # Enough of each for Rasa's DIET to learn the entity from context.
    assert annotated["substance"] >= 150
    assert annotated["craving_level"] >= 15
    assert annotated["country"] >= 20


def test_lookup_entries_resolve_to_canonical_values(data: TrainingData) -> None:
    assert {data.resolve(t) for t in data.lookups["substance"]} == SUBSTANCES
    countries = _countries(data)
    assert {"United States", "United Kingdom", "Canada", "Australia", "Ireland"} <= countries
    assert all(c[0].isupper() for c in countries)
    for street, canonical in [
        ("dope", "opioids"),
        ("smack", "opioids"),
        ("fenty", "opioids"),
        ("percs", "opioids"),
        ("tina", "stimulants"),
        ("crystal", "stimulants"),
        ("molly", "stimulants"),
        ("kush", "cannabis"),
        ("xans", "benzodiazepines"),
        ("bars", "benzodiazepines"),
        ("vape", "nicotine"),
        ("booze", "alcohol"),
        ("usa", "United States"),
        ("england", "United Kingdom"),
        ("aus", "Australia"),
        ("seven", "7"),
    ]:
        assert data.resolve(street) == canonical


def test_regexes_compile_and_match_levels(data: TrainingData) -> None:
    patterns = [re.compile(p, re.IGNORECASE) for p in data.regexes["craving_level"]]
    for text in ["8/10", "craving is like a 7", "its a nine", "craving level 10", "im at 6"]:
        assert any(p.search(text) for p in patterns), text
    for text in ["i had 2 beers", "meeting at 7pm", "a 6 pack", "day 10"]:
        assert not any(p.search(text) for p in patterns), text


def test_parse_annotated_forms() -> None:
    text, ents = parse_annotated(
        'need [dope](substance) and [8/10]{"entity": "craving_level", "value": "8"}'
    )
    assert text == "need dope and 8/10"
    assert [(e["entity"], e.get("value"), e["start"], e["end"]) for e in ents] == [
        ("substance", None, 5, 9),
        ("craving_level", "8", 14, 18),
    ]
    text, ents = parse_annotated("in the [uk](country:United Kingdom)")
    assert text == "in the uk" and ents[0]["value"] == "United Kingdom"
    text, ents = parse_annotated('[coke][{"entity": "substance", "value": "stimulants"}]')
    assert text == "coke" and ents[0]["value"] == "stimulants"
    assert parse_annotated("no markup [here]") == ("no markup [here]", [])


def test_loader_merges_files_and_learns_annotation_synonyms(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "a.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: craving\n  examples: |\n'
        '    - want some [smack]{"entity": "substance", "value": "opioids"}\n'
        "    - craving [weed](substance)\n",
        encoding="utf-8",
    )
    (data_dir / "b.yaml").write_text(
        'version: "3.1"\nnlu:\n- synonym: cannabis\n  examples: |\n    - Weed\n'
        "- regex: n\n  examples: |\n    - \\d+\n- lookup: substance\n  examples: |\n    - weed\n",
        encoding="utf-8",
    )
    data = load_project(tmp_path)
    assert data.texts == ["want some smack", "craving weed"]
    assert data.synonyms == {"smack": "opioids", "weed": "cannabis"}
    assert data.examples[1].entities[0].value == "cannabis"
    assert data.regexes == {"n": ("\\d+",)} and data.lookups == {"substance": ("weed",)}
    before = data.data_hash
    (data_dir / "a.yml").write_text(
        (data_dir / "a.yml").read_text(encoding="utf-8") + "    - more\n", encoding="utf-8"
    )
    assert load_project(tmp_path).data_hash != before


def test_hash_is_stable_and_follows_content(tmp_path: Path, data: TrainingData) -> None:
    copy = tmp_path / "proj"
    shutil.copytree(PROJECT / "data", copy / "data")
    assert load_project(copy).data_hash == data.data_hash


def test_bad_yaml_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("nlu:\n- intent: x\n  examples: [1, 2\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"bad\.yml"):
        load_nlu_file(bad)
    bad.write_text("nlu:\n- what: x\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="expected intent"):
        load_nlu_file(bad)
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_project(tmp_path / "missing")
