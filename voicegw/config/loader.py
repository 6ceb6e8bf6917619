"""Load voicegw.yaml, sip_profiles/*.yaml and flows/*.yaml; every problem located.

YAML is read with PyYAML's SafeLoader in two steps: ``compose`` gives the node tree,
whose marks say where each key and list item starts; from it we record a line for
every path (``("nodes", "menu", "routes", 0)`` -> 14), refuse duplicate keys (which
plain PyYAML silently overwrites), then construct the data from the same tree. A
pydantic ``ValidationError`` is turned into :class:`Problem`s by walking its error
locations through the data (skipping the discriminator tags pydantic inserts), so
each message names the file, the line and the field. Checks across files live in
:mod:`voicegw.config.checks` and :mod:`voicegw.config.load` runs both; everything is
collected and raised as one :class:`ConfigError`, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from .errors import ConfigError, Problem
from .models import MOVED, DaemonSettings, FlowFile, Profile

PathKey = tuple[Any, ...]

MAX_FILE_SIZE = 1 << 20
"""A config file larger than 1 MiB is refused: no flow needs it, and a YAML alias bomb
is cheaper to stop before parsing."""


@dataclass
class Document:
    """One YAML file: its data and the line where each path starts."""

    path: Path
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.path)

    def line_of(self, path: Iterable[Any]) -> int | None:
        """The line of the longest prefix of ``path`` that the file has."""
        key = tuple(path)
        text = {tuple(map(str, k)): line for k, line in self.lines.items()}  # YAML 1: vs "1"
        while key:
            if key in self.lines:
                return self.lines[key]
            if tuple(map(str, key)) in text:
                return text[tuple(map(str, key))]
            key = key[:-1]
        return self.lines.get(())

    def problem(self, path: Iterable[Any], message: str) -> Problem:
        path = tuple(path)
        return Problem(self.label, self.line_of(path), dotted(path), message)


def dotted(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


class _Loader(yaml.SafeLoader):
    """SafeLoader (no Python objects from tags); marks kept by ``_index``."""


def read_yaml(path: Path) -> tuple[Document | None, list[Problem]]:
    """The file as a :class:`Document`, or the problems that stopped reading it."""
    label = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        return None, [Problem(label, None, "", f"cannot read: {error.strerror or error}")]
    if len(raw) > MAX_FILE_SIZE:
        return None, [Problem(label, None, "", f"larger than {MAX_FILE_SIZE} bytes")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [Problem(label, None, "", f"not UTF-8 text (byte {error.start})")]
    loader = _Loader(text)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        document = Document(path, None, {(): 1})
        if node is not None:
            document.lines[()] = node.start_mark.line + 1
            _index(loader, node, (), document, problems)
            if problems:
                return None, problems
            document.data = loader.construct_document(node)
        return document, []
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (error.context, error.problem) if p)
        return None, [Problem(label, line, "", f"not valid YAML: {what}")]
    except yaml.YAMLError as error:
        return None, [Problem(label, None, "", f"not valid YAML: {error}")]
    finally:
        loader.dispose()


def _index(loader: _Loader, node: yaml.Node, path: PathKey, document: Document,
           problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = _key(loader, key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(document.label, line, dotted((*path, key)),
                                        f"duplicate key (first on line {seen[key]})"))
            seen[key] = line
        loader.flatten_mapping(node)  # resolve '<<' merges, as construction will
        for key_node, value_node in node.value:
            key = _key(loader, key_node)
            if key is _UNHASHABLE:
                problems.append(Problem(document.label, key_node.start_mark.line + 1, dotted(path),
                                        "a key must be a plain value"))
                continue
            document.lines[(*path, key)] = key_node.start_mark.line + 1
            _index(loader, value_node, (*path, key), document, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            document.lines[(*path, index)] = item.start_mark.line + 1
            _index(loader, item, (*path, index), document, problems)


_UNHASHABLE = object()


def _key(loader: _Loader, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return _UNHASHABLE
    return loader.construct_object(node)


# -------------------------------------------------------------------------- pydantic


def validate(document: Document, model: type[BaseModel] | TypeAdapter[Any],
             base: PathKey = ()) -> tuple[Any, list[Problem]]:
    """``document.data`` as ``model``, or the located problems."""
    data = document.data
    for key in base:
        data = data[key]
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data), []
        return model.model_validate(data), []
    except ValidationError as error:
        return None, [_problem(document, data, base, e) for e in error.errors()]


def _problem(document: Document, data: Any, base: PathKey, error: Any) -> Problem:
    path = list(base)
    current = data
    loc = list(error["loc"])
    kind = error["type"]
    missing_field = loc.pop() if kind == "missing" and loc else None
    key_error = bool(loc) and loc[-1] == "[key]"
    if key_error:
        loc.pop()
    for element in loc:
        if isinstance(current, dict):
            key = _find_key(current, element)
            if key is not _UNHASHABLE:
                path.append(key)
                current = current[key]
            # else: a discriminator tag or union member name that pydantic inserts
        elif isinstance(current, list) and isinstance(element, int) and 0 <= element < len(current):
            path.append(element)
            current = current[element]
    line = document.line_of(path)
    if missing_field is not None:
        path.append(missing_field)
    return Problem(document.label, line, dotted(path), _message(error, current, missing_field))


def _find_key(mapping: dict[Any, Any], element: Any) -> Any:
    if element in mapping:
        return element
    for key in mapping:
        if str(key) == str(element):
            return key
    return _UNHASHABLE


_TYPE_WORDS = {
    "string_type": "text", "int_type": "a whole number", "float_type": "a number",
    "bool_type": "true or false", "dict_type": "a mapping", "list_type": "a list",
    "model_type": "a mapping", "model_attributes_type": "a mapping",
}


def _message(error: Any, value: Any, missing_field: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "union_tag_invalid":
        name = str(ctx.get("discriminator", "")).strip("'")
        return f"unknown {name} {ctx.get('tag')!r} (expected {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        name = str(ctx.get("discriminator", "")).strip("'")
        return f"needs a {name} field"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, not {_describe(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, not {_describe(value)}"
    message = str(error["msg"])
    if kind in ("value_error", "assertion_error"):
        message = message.split(", ", 1)[1] if ", " in message else message
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        message = f"{message[0].lower()}{message[1:]} (got {value!r})"
    return message


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


# -------------------------------------------------------------------------- the whole config


@dataclass
class Source:
    """A validated model and the document it came from (for located cross-file checks)."""

    document: Document
    model: Any


@dataclass
class LoadedConfig:
    """Everything ``voicegw.yaml`` points at, validated; :mod:`convert` makes it plain."""

    settings: Source
    """The daemon config (its document is empty for the embedded default)."""
    base_dir: Path
    """Relative paths in the config are relative to this (the config file's folder)."""
    profiles: dict[str, Source] = field(default_factory=dict)
    flows: dict[str, Source] = field(default_factory=dict)
    path: Path | None = None
    """The config file, or None for the embedded default."""

    @property
    def daemon(self) -> DaemonSettings:
        return self.settings.model  # type: ignore[no-any-return]

    def files(self) -> list[str]:
        docs = [s.document for s in (self.settings, *self.profiles.values(), *self.flows.values())]
        return [d.label for d in docs if d.path != EMBEDDED]


EMBEDDED = Path("<embedded default>")
_PROFILE = TypeAdapter(Profile)


def read_config(path: Path | None = None, *, profiles_dir: Path | None = None,
                flows_dir: Path | None = None) -> LoadedConfig:
    """Read and validate the config at ``path`` and the profiles and flows it names,
    each file on its own (the checks across files are checks.py's; load.py runs both).

    ``path=None`` is the embedded default, which reads no directories unless
    ``profiles_dir``/``flows_dir`` are given (``voicegw check`` with no --config
    passes ./sip_profiles and ./flows). Raises :class:`ConfigError` with every problem.
    """
    problems: list[Problem] = []
    if path is None:
        document = Document(EMBEDDED, {}, {})
        base_dir = Path(".")
        settings_data: dict[str, Any] = {"profiles_dir": None, "flows_dir": None}
    else:
        loaded, problems = read_yaml(path)
        if loaded is None:
            raise ConfigError(problems)
        document = loaded
        if document.data is None:
            document.data = {}
        if not isinstance(document.data, dict):
            raise ConfigError([document.problem((), "the config must be a mapping of sections")])
        base_dir = path.parent
        settings_data = document.data
    calls = settings_data.get("calls")
    if isinstance(calls, dict):
        problems += [document.problem(("calls", key), f"has moved to {where}")
                     for key, where in MOVED.items() if key in calls]
        if problems:
            raise ConfigError(problems)
    settings, problems = validate(Document(document.path, settings_data, document.lines), DaemonSettings)
    if settings is None:
        raise ConfigError(problems)
    config = LoadedConfig(Source(document, settings), base_dir, path=path)
    profile_dir = _directory(base_dir, settings.profiles_dir, profiles_dir)
    flow_dir = _directory(base_dir, settings.flows_dir, flows_dir)
    if profile_dir is not None:
        problems += _load_many(profile_dir, "profile", _load_profile, config.profiles,
                               explicit=profiles_dir is not None or "profiles_dir" in settings_data,
                               owner=document)
    if flow_dir is not None:
        problems += _load_many(flow_dir, "flow", _load_flow, config.flows,
                               explicit=flows_dir is not None or "flows_dir" in settings_data,
                               owner=document)
    if problems:
        raise ConfigError(problems)
    return config


def _directory(base_dir: Path, configured: str | None, given: Path | None) -> Path | None:
    if given is not None:
        return given
    if configured is None:
        return None
    folder = Path(configured)
    return folder if folder.is_absolute() else base_dir / folder


def _load_many(folder: Path, what: str, load_one: Callable[[Path], tuple[Source | None, list[Problem]]],
               into: dict[str, Source], *, explicit: bool, owner: Document) -> list[Problem]:
    if not folder.is_dir():
        if explicit:
            key = "profiles_dir" if what == "profile" else "flows_dir"
            return [owner.problem((key,), f"{folder} is not a folder")]
        return []  # the default folder may be absent: no profiles, no flows
    problems: list[Problem] = []
    for file in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        source, found = load_one(file)
        problems += found
        if source is None:
            continue
        name = source.model.name
        if name in into:
            problems.append(source.document.problem(
                ("name",), f"{what} name {name!r} is also used by {into[name].document.label}"))
            continue
        into[name] = source
    return problems


def _read_mapping(file: Path, what: str) -> tuple[Document | None, list[Problem]]:
    document, problems = read_yaml(file)
    if document is None:
        return None, problems
    if not isinstance(document.data, dict):
        return None, [document.problem((), f"a {what} file is a mapping of fields")]
    document.data.setdefault("name", file.stem)
    return document, []


def _load_profile(file: Path) -> tuple[Source | None, list[Problem]]:
    document, problems = _read_mapping(file, "profile")
    if document is None:
        return None, problems
    model, problems = validate(document, _PROFILE)
    return (Source(document, model) if model is not None else None), problems


def _load_flow(file: Path) -> tuple[Source | None, list[Problem]]:
    document, problems = _read_mapping(file, "flow")
    if document is None:
        return None, problems
    model, problems = validate(document, FlowFile)
    return (Source(document, model) if model is not None else None), problems

