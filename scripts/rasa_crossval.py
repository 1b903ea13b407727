"""5-fold cross-validation of real Rasa (DIET, nlu/config.yml) on Kindred's NLU data.

Run with the Rasa venv's Python (3.10, Rasa 3.6), from the repo root:

    ~/.cache/kindred/rasa-3.6.21-venv/bin/python scripts/rasa_crossval.py [--embedded]

The folds come from the main venv (KINDRED_PYTHON, default .venv/bin/python), through
nlu.evaluate's own split when it has one, so Rasa and the embedded interpreter are scored on
exactly the same folds; otherwise sklearn's StratifiedKFold(shuffle=True, random_state=seed)
over the examples in nlu.training_data.load_project order. For each fold the training part
(with every synonym, regex and lookup table) is written as Rasa YAML to a temp dir, trained
with rasa.model_training.train_nlu, and the held-out part parsed with rasa.core.agent.Agent.
Rasa's nlu_fallback counts as out_of_scope, as the bot reads it. Prints one JSON object on
its last line: {"rasa_macro_f1_mean", "per_fold", ...} (plus "embedded_*" with --embedded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
FALLBACK_INTENT = "out_of_scope"

# Runs in the main venv (Python 3.11): examples, folds and (optionally) the embedded CV.
MAIN_SNIPPET = r"""
import json, sys
from pathlib import Path
args = json.load(sys.stdin)
from nlu.training_data import load_project
project = Path(args["project"])
data = load_project(project)
# Exactly nlu.evaluate.cross_validate's split, so both models see the same folds.
import numpy as np
from sklearn.model_selection import StratifiedKFold
labels = np.array(data.labels)
splitter = StratifiedKFold(n_splits=args["folds"], shuffle=True, random_state=args["seed"])
folds = [[int(i) for i in test] for _train, test in splitter.split(np.zeros(len(labels)), labels)]
split = (
    f"StratifiedKFold(n_splits={args['folds']}, shuffle=True, random_state={args['seed']}) "
    "over nlu.training_data.load_project's labels, as nlu.evaluate.cross_validate"
)
out = {
    "split": split,
    "data_hash": data.data_hash,
    "examples": [
        {
            "text": ex.text,
            "intent": ex.intent,
            "entities": [
                {"entity": e.entity, "value": e.value, "start": e.start, "end": e.end,
                 "role": e.role, "group": e.group}
                for e in ex.entities
            ],
        }
        for ex in data.examples
    ],
    "synonyms": dict(data.synonyms),
    "regexes": {k: list(v) for k, v in data.regexes.items()},
    "lookups": {k: list(v) for k, v in data.lookups.items()},
    "folds": folds,
}
if args["embedded"]:
    from nlu.evaluate import cross_validate
    out["embedded"] = cross_validate(project, folds=args["folds"], seed=args["seed"])
json.dump(out, sys.stdout)
"""

# Runs in the main venv: scores with nlu.evaluate.classification_report, the embedded CV's own.
SCORE_SNIPPET = r"""
import json, sys
from nlu.evaluate import classification_report
pairs = json.load(sys.stdin)
json.dump([classification_report(gold, pred) for gold, pred in pairs], sys.stdout)
"""


def log(message: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(f"[rasa-crossval {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def in_main_venv(python: str, snippet: str, payload: Any) -> Any:
    """Run a snippet with the main venv's Python (JSON in on stdin, JSON out on stdout)."""
    done = subprocess.run(
        [python, "-c", snippet],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{python} failed; is the main venv installed (pip install -e .)?")
    return json.loads(done.stdout)


def annotate(example: dict[str, Any]) -> str:
    """The example's text with Rasa entity markup: [text]{"entity": ..., "value": ...}."""
    text: str = example["text"]
    by_span: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for ent in example["entities"]:
        spec = {"entity": ent["entity"]}
        surface = text[ent["start"] : ent["end"]]
        if ent["value"] != surface:
            spec["value"] = ent["value"]
        for key in ("role", "group"):
            if ent.get(key):
                spec[key] = ent[key]
        by_span.setdefault((ent["start"], ent["end"]), []).append(spec)
    out, last = [], 0
    for (start, end), specs in sorted(by_span.items()):
        if start < last:  # overlapping spans cannot be written inline; keep the first
            continue
        out.append(text[last:start])
        # One entity: [text]{...}; several on the same span: [text][{...}, {...}].
        markup = json.dumps(specs[0] if len(specs) == 1 else specs, ensure_ascii=False)
        out.append(f"[{text[start:end]}]{markup}")
        last = end
    out.append(text[last:])
    return "".join(out)


def write_training_yaml(path: Path, examples: list[dict[str, Any]], project: Any) -> None:
    """Rasa 3 NLU YAML with these examples and all of the project's synonyms/regexes/lookups."""
    by_intent: dict[str, list[str]] = {}
    for ex in examples:
        by_intent.setdefault(ex["intent"], []).append(annotate(ex))
    nlu: list[dict[str, Any]] = [
        {"intent": intent, "examples": "".join(f"- {line}\n" for line in lines)}
        for intent, lines in by_intent.items()
    ]
    synonyms: dict[str, list[str]] = {}
    for variant, canonical in project["synonyms"].items():
        synonyms.setdefault(canonical, []).append(variant)
    nlu += [
        {"synonym": canonical, "examples": "".join(f"- {v}\n" for v in variants)}
        for canonical, variants in synonyms.items()
    ]
    nlu += [
        {"regex": name, "examples": "".join(f"- {p}\n" for p in patterns)}
        for name, patterns in project["regexes"].items()
    ]
    nlu += [
        {"lookup": name, "examples": "".join(f"- {v}\n" for v in values)}
        for name, values in project["lookups"].items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump({"version": "3.1", "nlu": nlu}, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )


def config_with_epochs(config: Path, epochs: int | None, out: Path) -> Path:
    """The config as is, or with DIETClassifier's epochs overridden (for quick smoke runs)."""
    if epochs is None:
        return config
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    for component in doc.get("pipeline") or []:
        if component.get("name") == "DIETClassifier":
            component["epochs"] = epochs
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


def run_fold(
    index: int,
    train: list[dict[str, Any]],
    test: list[dict[str, Any]],
    project: Any,
    config: Path,
    domain: Path | None,
    workdir: Path,
    known_intents: set[str],
) -> dict[str, Any]:
    """Train Rasa on one fold's training part and predict the held-out part's intents."""
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    data_dir = workdir / f"fold{index}" / "data"
    write_training_yaml(data_dir / "nlu.yml", train, project)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
        model = train_nlu(
            config=str(config),
            nlu_data=str(data_dir),
            output=str(workdir / f"fold{index}" / "models"),
            fixed_model_name=f"fold{index}",
            domain=str(domain) if domain else None,
        )
    if not model:
        raise SystemExit(f"fold {index}: rasa train nlu produced no model")
    train_s = time.perf_counter() - started
    agent = Agent.load(model)

    async def parse_all() -> list[str]:
        names = []
        for ex in test:
            result = await agent.parse_message(ex["text"])
            names.append(str((result.get("intent") or {}).get("name")))
        return names

    started = time.perf_counter()
    raw = asyncio.run(parse_all())
    parse_ms = (time.perf_counter() - started) * 1000 / max(len(test), 1)
    return {
        "fold": index,
        "train": len(train),
        "test": len(test),
        "gold": [ex["intent"] for ex in test],
        "pred": [name if name in known_intents else FALLBACK_INTENT for name in raw],
        "nlu_fallback": sum(1 for name in raw if name == "nlu_fallback"),
        "train_s": round(train_s, 1),
        "parse_ms_mean": round(parse_ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Cross-validate Rasa on the project's data; print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT / "nlu")
    parser.add_argument("--config", type=Path, default=None, help="default: PROJECT/config.yml")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=None, help="override DIET epochs")
    parser.add_argument("--only-folds", type=int, default=None, help="run the first N folds")
    parser.add_argument("--embedded", action="store_true", help="also run nlu.evaluate's CV")
    parser.add_argument(
        "--main-python", default=os.environ.get("KINDRED_PYTHON", str(ROOT / ".venv/bin/python"))
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)
    for name in ("rasa", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)  # else Rasa's structlog prints every parse at debug

    project_dir = args.project.resolve()
    config = (args.config or project_dir / "config.yml").resolve()
    domain = project_dir / "domain.yml"
    started = time.perf_counter()
    log(f"loading examples and folds through {args.main_python}")
    request = {"project": str(project_dir), "folds": args.folds, "seed": args.seed}
    project = in_main_venv(args.main_python, MAIN_SNIPPET, {**request, "embedded": args.embedded})
    examples = project["examples"]
    known = {ex["intent"] for ex in examples}
    log(f"{len(examples)} examples, {len(known)} intents, split: {project['split']}")

    per_fold = []
    with tempfile.TemporaryDirectory(prefix="kindred-rasa-cv-") as tmp:
        workdir = Path(tmp)
        cfg = config_with_epochs(config, args.epochs, workdir / "config.yml")
        fold_list = project["folds"][: args.only_folds] if args.only_folds else project["folds"]
        for index, test_idx in enumerate(fold_list):
            held_out = set(test_idx)
            train = [ex for i, ex in enumerate(examples) if i not in held_out]
            test = [examples[i] for i in test_idx]
            log(f"fold {index + 1}/{len(fold_list)}: training on {len(train)}")
            result = run_fold(
                index,
                train,
                test,
                project,
                cfg,
                domain if domain.exists() else None,
                workdir,
                known,
            )
            (scored,) = in_main_venv(
                args.main_python, SCORE_SNIPPET, [[result["gold"], result["pred"]]]
            )
            result.update(macro_f1=scored["macro"]["f1"], accuracy=scored["accuracy"])
            log(f"fold {index + 1}: macro-F1 {result['macro_f1']:.4f} ({result['train_s']}s)")
            per_fold.append(result)

    pooled_gold = [g for f in per_fold for g in f["gold"]]
    pooled_pred = [p for f in per_fold for p in f["pred"]]
    (pooled,) = in_main_venv(args.main_python, SCORE_SNIPPET, [[pooled_gold, pooled_pred]])
    f1s = [f["macro_f1"] for f in per_fold]
    report: dict[str, Any] = {
        "rasa_macro_f1_mean": round(statistics.fmean(f1s), 4),
        "rasa_macro_f1_std": round(statistics.pstdev(f1s), 4),
        "rasa_accuracy_mean": round(statistics.fmean(f["accuracy"] for f in per_fold), 4),
        "per_fold": [{k: v for k, v in f.items() if k not in ("gold", "pred")} for f in per_fold],
        "rasa_pooled": {k: pooled[k] for k in ("accuracy", "macro", "per_intent")},
        "rasa_top_confusions": pooled["confusions"][:15],
        "folds": args.folds,
        "seed": args.seed,
        "split": project["split"],
        "data_hash": project["data_hash"],
        "examples": len(examples),
        "epochs": args.epochs or "config",
        "seconds": round(time.perf_counter() - started, 1),
    }
    if "embedded" in project:
        embedded = project["embedded"]
        report["embedded_macro_f1_mean"] = embedded["macro_f1_mean"]
        report["embedded_macro_f1_std"] = embedded["macro_f1_std"]
        report["embedded_per_fold"] = embedded["per_fold"]
        report["embedded_pooled_macro"] = embedded["pooled"]["macro"]
    text = json.dumps(report)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
