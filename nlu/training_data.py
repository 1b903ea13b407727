"""Load a Rasa 3.x NLU project's YAML training data into typed values."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATA_SUFFIXES: tuple[str, ...] = (".yml", ".yaml")

# The same annotation grammar Rasa 3 accepts: [text](entity), [text](entity:value),
# [text]{"entity": ..., "value": ...} and [text][{...}, {...}].
ENTITY_ANNOTATION = re.compile(
    r"\[(?P<entity_text>[^\]]+?)\]"
    r"(\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)"
    r"|\{(?P<entity_dict>[^}]+?)\}"
    r"|\[(?P<list_entity_dicts>.*?)\])"
)

# libyaml is ~10x faster on the ~3,000-line data files; fall back to pure Python without it.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TrainingDataError(ValueError):
    """The YAML is not valid Rasa NLU training data."""


@dataclass(frozen=True)
class EntitySpan:
    """One annotated entity: offsets into the plain example text; value after synonyms."""

    entity: str
    value: str
    start: int
    end: int
    text: str
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Example:
    """One training example: plain text (markup removed), its intent and its entities."""

    text: str
    intent: str
    entities: tuple[EntitySpan, ...] = ()


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Everything the NLU YAML of a project says, in typed form."""

    examples: tuple[Example, ...]
    synonyms: Mapping[str, str] = field(default_factory=dict)
    regexes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lookups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    data_hash: str = ""
    files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def intents(self) -> tuple[str, ...]:
        """The intents, in order of first appearance."""
        return tuple(dict.fromkeys(ex.intent for ex in self.examples))

    @property
    def texts(self) -> list[str]:
        """The plain text of every example."""
        return [ex.text for ex in self.examples]

    @property
    def labels(self) -> list[str]:
        """The intent of every example."""
        return [ex.intent for ex in self.examples]

    def counts(self) -> dict[str, int]:
        """How many examples each intent has."""
        return dict(Counter(self.labels))

    def subset(self, indices: Iterable[int]) -> TrainingData:
        """The same data with only the chosen examples (for cross-validation)."""
        picked = tuple(self.examples[i] for i in indices)
        return TrainingData(
            examples=picked,
            synonyms=self.synonyms,
            regexes=self.regexes,
            lookups=self.lookups,
            data_hash=self.data_hash,
            files=self.files,
            warnings=self.warnings,
        )

    def resolve(self, value: str) -> str:
        """A value after the entity synonyms (Rasa's EntitySynonymMapper rule)."""
        return self.synonyms.get(value.lower(), value)


def parse_annotated(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Strip entity markup from one example; return the plain text and raw entity dicts."""
    plain: list[str] = []
    entities: list[dict[str, Any]] = []
    last = 0
    for match in ENTITY_ANNOTATION.finditer(text):
        plain.append(text[last : match.start()])
        start = sum(len(p) for p in plain)
        entity_text = match.group("entity_text")
        plain.append(entity_text)
        end = start + len(entity_text)
        for spec in _annotation_specs(match, text):
            entities.append({**spec, "start": start, "end": end, "text": entity_text})
        last = match.end()
    plain.append(text[last:])
    return "".join(plain), entities


def _annotation_specs(match: re.Match[str], source: str) -> list[dict[str, Any]]:
    """The entity dicts one annotation carries (several with the list form)."""
    if match.group("entity"):
        spec: dict[str, Any] = {"entity": match.group("entity").strip()}
        if match.group("value"):
            spec["value"] = match.group("value").strip()
        return [spec]
    try:
        if match.group("entity_dict") is not None:
            loaded: Any = json.loads("{" + match.group("entity_dict") + "}")
            specs = [loaded]
        else:
            specs = json.loads("[" + match.group("list_entity_dicts") + "]")
    except json.JSONDecodeError as exc:
        raise TrainingDataError(f"bad entity annotation in {source!r}: {exc}") from exc
    for spec in specs:
        if not isinstance(spec, dict) or "entity" not in spec:
            raise TrainingDataError(f"entity annotation without 'entity' in {source!r}")
    return [dict(s) for s in specs]


def _block_items(examples: Any, where: str, warnings: list[str]) -> list[str]:
    """The items of an `examples:` value: a '- item' block string or a list of {text: ...}."""
    if isinstance(examples, str):
        items = []
        for line in examples.splitlines():
            if not line.strip():
                continue
            if not line.startswith("-"):
                # Rasa warns and skips such lines too; keep the warning for the caller.
                warnings.append(f"{where}: line without leading '- ' skipped: {line!r}")
                continue
            items.append(line[1:].strip(" \r\n"))
        return items
    if isinstance(examples, list):
        items = []
        for item in examples:
            if isinstance(item, dict) and "text" in item:
                items.append(str(item["text"]).strip(" \r\n"))
            elif isinstance(item, str):
                items.append(item.strip(" \r\n"))
            else:
                raise TrainingDataError(f"{where}: unsupported example {item!r}")
        return items
    raise TrainingDataError(f"{where}: 'examples' must be a block string or a list")


def _read_yaml(path: Path) -> dict[str, Any]:
    """One YAML file as a mapping (empty files are empty mappings)."""
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise TrainingDataError(f"{path}: invalid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TrainingDataError(f"{path}: top level must be a mapping")
    return loaded


def data_files(data_dir: Path) -> list[Path]:
    """All YAML files under a data directory, in a stable order."""
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)


def content_hash(paths: Sequence[Path], root: Path | None = None) -> str:
    """SHA-256 over the files' relative names and bytes (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: str(p.relative_to(root) if root else p.name)):
        name = str(path.relative_to(root)) if root else path.name
        digest.update(name.encode("utf-8") + b"\0")
        body = path.read_bytes()
        digest.update(len(body).to_bytes(8, "big") + body)
    return digest.hexdigest()


def load_files(paths: Sequence[Path], root: Path | None = None) -> TrainingData:
    """Load and merge NLU training data from Rasa YAML files."""
    raw_examples: list[tuple[str, str, str]] = []  # (annotated text, intent, where)
    synonyms: dict[str, str] = {}
    regexes: dict[str, list[str]] = {}
    lookups: dict[str, list[str]] = {}
    warnings: list[str] = []
    for path in paths:
        doc = _read_yaml(path)
        nlu = doc.get("nlu") or []
        if not isinstance(nlu, list):
            raise TrainingDataError(f"{path}: 'nlu' must be a list")
        for index, item in enumerate(nlu):
            where = f"{path.name}: nlu[{index}]"
            if not isinstance(item, dict):
                raise TrainingDataError(f"{where}: each entry must be a mapping")
            if "intent" in item:
                items = _block_items(item.get("examples", ""), where, warnings)
                raw_examples.extend((text, str(item["intent"]), where) for text in items)
            elif "synonym" in item:
                canonical = str(item["synonym"])
                for variant in _block_items(item.get("examples", ""), where, warnings):
                    _add_synonym(synonyms, variant, canonical, where, warnings)
            elif "regex" in item:
                regexes.setdefault(str(item["regex"]), []).extend(
                    _block_items(item.get("examples", ""), where, warnings)
                )
            elif "lookup" in item:
                lookups.setdefault(str(item["lookup"]), []).extend(
                    _block_items(item.get("examples", ""), where, warnings)
                )
            else:
                raise TrainingDataError(f"{where}: expected intent, synonym, regex or lookup")
    parsed = [(parse_annotated(text), intent, where) for text, intent, where in raw_examples]
    # Rasa's EntitySynonymMapper also learns [text]{"value": other} annotations as synonyms.
    for (_plain, ents), _intent, where in parsed:
        for ent in ents:
            value = ent.get("value")
            if value is not None and str(value) != ent["text"]:
                _add_synonym(synonyms, ent["text"], str(value), where, warnings)
    examples = []
    for (plain, ents), intent, _where in parsed:
        spans = tuple(
            EntitySpan(
                entity=str(ent["entity"]),
                value=_resolve(synonyms, str(ent.get("value", ent["text"]))),
                start=int(ent["start"]),
                end=int(ent["end"]),
                text=str(ent["text"]),
                role=ent.get("role"),
                group=ent.get("group"),
            )
            for ent in ents
        )
        examples.append(Example(text=plain, intent=intent, entities=spans))
    return TrainingData(
        examples=tuple(examples),
        synonyms=synonyms,
        regexes={k: tuple(v) for k, v in regexes.items()},
        lookups={k: tuple(v) for k, v in lookups.items()},
        data_hash=content_hash(paths, root),
        files=tuple(paths),
        warnings=tuple(warnings),
    )


def _resolve(synonyms: Mapping[str, str], value: str) -> str:
    """A value after the synonyms."""
    return synonyms.get(value.lower(), value)


def _add_synonym(
    synonyms: dict[str, str], variant: str, canonical: str, where: str, warnings: list[str]
) -> None:
    """Record variant -> canonical (keys lowercased, as Rasa does), noting conflicts."""
    key = variant.lower()
    if key == canonical:
        return
    previous = synonyms.get(key)
    if previous is not None and previous != canonical:
        warnings.append(f"{where}: synonym {variant!r} maps to {previous!r} and {canonical!r}")
    synonyms[key] = canonical


def load_project(project_dir: Path) -> TrainingData:
    """Load all YAML training data under `project_dir/data`."""
    data_dir = Path(project_dir) / "data"
    if not data_dir.is_dir():
        raise TrainingDataError(f"{data_dir} does not exist")
    paths = data_files(data_dir)
    if not paths:
        raise TrainingDataError(f"no *.yml training data under {data_dir}")
    return load_files(paths, root=data_dir)


def load_nlu_file(path: Path) -> TrainingData:
    """Load one Rasa NLU YAML file (e.g. a test set)."""
    path = Path(path)
    return load_files([path], root=path.parent)
