"""SafetyNet: recall on the crisis set, false alarms on hard negatives, overrides, normalisation.

Understanding objects are built by hand (a fake classifier answer), so these tests do not depend
on the embedded classifier or Rasa.
"""

from __future__ import annotations

import json

import pytest

from nlu.normalize import LexiconNotFoundError, Normalizer, load_lexicon, normalize
from nlu.safety import OVERDOSE, SUICIDE, SafetyNet, required_literals
from nlu.understanding import IntentScore, Understanding
from tests.test_safety_sets import regression_rows

SAFETY_KEYS = {"rule", "kind", "also", "probability", "lang", "overrode"}


CRISIS = regression_rows("en_crisis.tsv")
HARD_NEGATIVE = regression_rows("en_hard_negative.tsv")


@pytest.fixture(scope="module")
def net() -> SafetyNet:
    """The English safety net (built once)."""
    return SafetyNet.for_language("en")


def _classified(
    text: str,
    intent: str = "out_of_scope",
    confidence: float = 0.9,
    ranking: tuple[IntentScore, ...] | None = None,
) -> Understanding:
    """A fake classifier answer for a message."""
    top = IntentScore(intent, confidence)
    return Understanding(text=text, intent=top, intent_ranking=ranking or (top,), source="embedded")


# ---- regression sets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("my phone died. ", ""),
        ("i'm dying to see my kids. ", ""),
        ("i relapsed last night. ", ""),
        ("", ". this exam is killing me lol"),
        ("", ". anyway how do i use narcan?"),
        ("", ". i'm not suicidal though"),
    ],
)
def test_guards_in_another_sentence_never_silence_a_crisis(
    net: SafetyNet, before: str, after: str
) -> None:
    missed = [text for _, text in CRISIS if not net.assess(before + text + after).is_crisis]
    assert not missed, missed[:10]


def test_prefilter_gives_the_same_answers_as_running_every_rule(net: SafetyNet) -> None:
    reference = SafetyNet(load_lexicon("en"), lang="en", prefilter=False)
    for _, text in CRISIS + HARD_NEGATIVE:
        fast, slow = net.assess(text), reference.assess(text)
        assert (fast.intent, fast.rule, fast.guarded) == (slow.intent, slow.rule, slow.guarded), (
            text
        )


def test_required_literals_are_really_required() -> None:
    needles = required_literals(r"(?:want|wish) to (?:die|be dead)|suicid(?:e|al)")
    assert needles is not None
    for text in ("i want to die", "i wish to be dead", "feeling suicidal"):
        assert any(n in text for n in needles)
    assert required_literals(r"(?:[^\W_]+ )?") is None


# ---- the override contract ----------------------------------------------------------------


def test_lexicon_overrides_a_non_crisis_classifier(net: SafetyNet) -> None:
    understood = _classified("honestly i just want to die")
    checked = net.check(understood)
    assert checked.intent == IntentScore(SUICIDE, 1.0)
    assert checked.intent_ranking[0] == checked.intent
    assert checked.source == "safety_net"
    assert checked.extras["safety"]["rule"] == "want_to_die"
    assert checked.extras["safety"]["overrode"] == "out_of_scope"
    assert checked.text == understood.text
    assert understood.intent.name == "out_of_scope"  # the input is not mutated


def test_no_crisis_returns_the_same_object(net: SafetyNet) -> None:
    understood = _classified("craving really bad tonight, 8/10", intent="craving")
    assert net.check(understood) is understood


def test_classifier_crisis_is_kept(net: SafetyNet) -> None:
    understood = _classified("i don't really know how to say this", intent=SUICIDE, confidence=0.7)
    assert net.check(understood) is understood


def test_classifier_crisis_is_kept_even_on_a_figure_of_speech(net: SafetyNet) -> None:
    understood = _classified("this exam is killing me", intent=SUICIDE, confidence=0.6)
    assert net.check(understood) is understood


def test_lexicon_corrects_the_crisis_type(net: SafetyNet) -> None:
    checked = net.check(_classified("i'm going to od on purpose tonight", intent=OVERDOSE))
    assert checked.intent.name == SUICIDE
    checked = net.check(_classified("my friend isn't breathing", intent=SUICIDE))
    assert checked.intent.name == OVERDOSE


def test_escalates_on_the_classifier_crisis_probability(net: SafetyNet) -> None:
    ranking = (
        IntentScore("mood_negative", 0.5),
        IntentScore(OVERDOSE, 0.15),
        IntentScore(SUICIDE, 0.25),
    )
    understood = _classified("everything feels heavy lately", "mood_negative", 0.5, ranking)
    checked = net.check(understood)
    assert checked.intent.name == SUICIDE
    assert checked.intent.confidence == pytest.approx(0.4)
    assert checked.extras["safety"]["rule"] == "classifier_probability"
    assert checked.extras["safety"]["probability"] == pytest.approx(0.4)


def test_escalation_picks_the_more_likely_crisis(net: SafetyNet) -> None:
    ranking = (
        IntentScore("out_of_scope", 0.5),
        IntentScore(OVERDOSE, 0.3),
        IntentScore(SUICIDE, 0.1),
    )
    checked = net.check(_classified("idk what is happening", "out_of_scope", 0.5, ranking))
    assert checked.intent.name == OVERDOSE


def test_no_escalation_below_the_threshold(net: SafetyNet) -> None:
    ranking = (IntentScore("mood_negative", 0.7), IntentScore(SUICIDE, 0.2))
    understood = _classified("everything feels heavy lately", "mood_negative", 0.7, ranking)
    assert net.check(understood) is understood


def test_threshold_is_an_attribute() -> None:
    strict = SafetyNet(load_lexicon("en"), escalation_threshold=0.9)
    ranking = (IntentScore("mood_negative", 0.5), IntentScore(SUICIDE, 0.45))
    understood = _classified("everything feels heavy lately", "mood_negative", 0.5, ranking)
    assert strict.check(understood) is understood


def test_a_guard_vetoes_the_probability_escalation(net: SafetyNet) -> None:
    ranking = (IntentScore("mood_negative", 0.5), IntentScore(SUICIDE, 0.45))
    understood = _classified("this exam is killing me", "mood_negative", 0.5, ranking)
    assert net.check(understood) is understood


def test_a_guard_cancels_only_the_match_it_overlaps(net: SafetyNet) -> None:
    assert not net.assess("i'm dying to see my kids this weekend").is_crisis
    verdict = net.assess("i'm dying to see my kids but honestly i want to die")
    assert verdict.intent == SUICIDE
    assert not net.assess("my friend od'd last year and i miss him").is_crisis
    verdict = net.assess("my friend od'd last year and now my brother isn't breathing")
    assert verdict.intent == OVERDOSE


def test_figures_of_speech_do_not_fire(net: SafetyNet) -> None:
    for text in (
        "dying for a smoke",
        "that movie killed me",
        "overdosed on netflix all weekend",
        "i want to die... of embarrassment lol",
        "dead tired",
        "my phone died",
        "killed it at work today",
        "suicide squad was terrible",
        "the cake was to die for",
    ):
        assert not net.assess(text).is_crisis, text


def test_ongoing_overdose_beats_suicide_and_a_mention_does_not(net: SafetyNet) -> None:
    verdict = net.assess("i want to die, i took everything and now i can't breathe")
    assert verdict.intent == OVERDOSE and verdict.also == SUICIDE
    verdict = net.assess("i'm going to overdose tonight so it all stops")
    assert verdict.intent == SUICIDE
    verdict = net.assess("i took a bunch of pills on purpose, i want to die")
    assert verdict.intent == SUICIDE and verdict.also == OVERDOSE
    assert net.assess("i swallowed a whole bottle of tylenol").intent == OVERDOSE


def test_also_is_reported_in_extras(net: SafetyNet) -> None:
    checked = net.check(_classified("i took a bunch of pills on purpose, i want to die"))
    assert checked.extras["safety"]["also"] == OVERDOSE


def test_message_text_never_reaches_extras(net: SafetyNet) -> None:
    texts = [t for _, t in CRISIS[:80]] + ["everything feels heavy lately"]
    ranking = (IntentScore("mood_negative", 0.5), IntentScore(SUICIDE, 0.45))
    for text in texts:
        checked = net.check(_classified(text, "mood_negative", 0.5, ranking))
        safety = checked.extras["safety"]
        assert set(safety) <= SAFETY_KEYS
        dumped = json.dumps(checked.extras)
        assert text not in dumped and net.normalizer(text) not in dumped
        assert all(isinstance(v, (str, float)) for v in safety.values())


def test_existing_extras_are_kept(net: SafetyNet) -> None:
    understood = Understanding(
        text="i want to kill myself",
        intent=IntentScore("out_of_scope", 0.9),
        extras={"latency_ms": 3.2},
    )
    checked = net.check(understood)
    assert checked.extras["latency_ms"] == 3.2 and "safety" in checked.extras
    assert understood.extras == {"latency_ms": 3.2}


def test_for_language_is_cached_and_missing_languages_fail_clearly() -> None:
    assert SafetyNet.for_language("en") is SafetyNet.for_language("en")
    with pytest.raises(LexiconNotFoundError, match="no safety lexicon"):
        SafetyNet.for_language("xx")
    with pytest.raises(LexiconNotFoundError):
        SafetyNet.for_language("../etc")


def test_bad_lexicons_are_rejected() -> None:
    with pytest.raises(ValueError, match="crisis intents"):
        SafetyNet({"intents": {"greet": [{"id": "x", "re": "hi"}]}})
    with pytest.raises(ValueError, match="unknown macro"):
        SafetyNet({"intents": {SUICIDE: [{"id": "x", "re": "{NOPE}"}]}})
    with pytest.raises(ValueError, match="bad regex"):
        SafetyNet({"intents": {SUICIDE: [{"id": "x", "re": "(unclosed"}]}})


# ---- normalisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("I’m done, don’t", "i am done do not"),
        ("“quoted” words", "quoted words"),
        ("pleeeease helllp", "please help"),
        ("sooooo tiiiired", "so tired"),
        ("killll myselfff", "kill myself"),
        ("too good to sleep", "too good to sleep"),
        ("kms", "kill myself"),
        ("i wanna kms rn", "i want to kill myself right now"),
        ("he od'd", "he overdosed"),
        ("he OD’d", "he overdosed"),
        ("think he o.d.'d", "think he overdosed"),
        ("someone is oding", "someone is overdosing"),
        ("my bf is od-ing", "my boyfriend is overdosing"),
        ("od help", "overdose help"),
        ("that's odd", "that is odd"),
        ("walked 5 kms today", "walked 5 kilometres today"),
        ("i cant, u know", "i cannot you know"),
        ("su\u200bi\u200dcide", "suicide"),
        ("thinking about s*icide", "thinking about suicide"),
        ("k1ll myself, took 20xans, 5mg at 3am", "kill myself took 20 xanax 5mg at 3am"),
        ("i want to d i e", "i want to die"),
        ("  lots   of\tspace\n", "lots of space"),
        ("idk tbh, smth bc", "i do not know to be honest something because"),
        ("i want to... die", "i want to die"),
        ("really? yes. ok!", "really ? yes . ok ."),
        ("ＦＵＬＬＷＩＤＴＨ", "fullwidth"),
        ("unalive myself", "kill myself"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_yaml_booleans_in_the_map_are_refused() -> None:
    with pytest.raises(ValueError, match="quote words"):
        Normalizer({"keep_double": ["kill", False]})


def test_normalizer_works_without_a_map() -> None:
    # Contractions and punctuation are built in; abbreviations come from the lexicon.
    assert Normalizer()("I’m  SOOO tired!! kms") == "i am so tired . kms"
