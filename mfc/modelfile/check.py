"""The semantic pass: syntax IR -> ModelSpec (typed, ARGs substituted) + diagnostics.

Pure except for the optional path check (``base_dir``), which only asks
whether FROM/ADAPTER/DRAFT paths exist; resolving them is the builder's job.
"""

from __future__ import annotations

import difflib
import glob
import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic, has_errors
from mfc.diagnostics.source import SourceFile, line_starts
from mfc.diagnostics.span import Span
from mfc.digest import is_digest
from mfc.modelfile.ir import Flag, Instruction, Modelfile, Quote
from mfc.modelfile.params import (
    INSTRUCTION_LIKE,
    PARAMETERS,
    ParamValueError,
    parse_param_value,
    suggest,
)
from mfc.modelfile.parser import ParseResult, parse_bytes, parse_text
from mfc.modelfile.refs import looks_like_path
from mfc.modelfile.spec import AdapterRef, BaseRef, Message, ModelSpec, Param, Text

_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARG_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Go's golang.org/x/mod/semver with an optional leading "v" (Ollama adds one).
_SEMVER = re.compile(
    r"v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)
_SINGLE = ("FROM", "DRAFT", "TEMPLATE", "SYSTEM", "REQUIRES", "RENDERER", "PARSER")
ADAPTER_FLAGS = ("scale",)
_TEMPLATE_HINT = {
    "go": "read as an Ollama Go template: actions are `{{ .Prompt }}`, "
    "`{{ if .System }}…{{ end }}`, `{{ range .Messages }}…{{ end }}`",
    "jinja": "read as a Jinja2 template: `{{ messages }}`, `{% for m in messages %}…{% endfor %}`",
    "": "TEMPLATE takes a Go template (`{{ .Prompt }}`) or Jinja2 (`{{ messages }}`)",
}

_BUDGET_HINT = (
    "templates are untrusted code: rendering one prompt may take at most 2 s and produce "
    "at most 4 MiB of text; loop over the messages, not over large ranges"
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    spec: ModelSpec | None  # None when there are errors
    diagnostics: tuple[Diagnostic, ...]
    source: SourceFile
    parse: ParseResult | None = None

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def check_text(
    text: str,
    filename: str = "Modelfile",
    build_args: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> CheckResult:
    return check_parsed(parse_text(text, filename), build_args, base_dir)


def check_file(
    path: str | os.PathLike[str],
    build_args: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> CheckResult:
    """Read, parse and check a Modelfile; paths are checked relative to its directory."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        diag = codes.UNREADABLE_FILE(
            None, f"cannot read `{name}`: {exc.strerror or exc}", hint="check the path"
        )
        return CheckResult(None, (diag,), SourceFile(name, ""))
    base = Path(name).parent if check_paths else None
    return check_parsed(parse_bytes(data, name), build_args, base)


def check_parsed(
    parsed: ParseResult,
    build_args: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> CheckResult:
    checker = _Checker(parsed.source, dict(build_args or {}), base_dir)
    spec = checker.run(parsed.modelfile)
    diags = tuple(
        sorted(
            (*parsed.diagnostics, *checker.diagnostics),
            key=lambda d: d.span.start if d.span is not None else float("inf"),
        )
    )
    if has_errors(diags):
        spec = None
    return CheckResult(spec, diags, parsed.source, parsed)


class _Checker:
    def __init__(self, source: SourceFile, build_args: dict[str, str], base_dir: Path | None):
        self.source = source
        self.build_args = build_args
        self.base_dir = base_dir
        self.diagnostics: list[Diagnostic] = []
        self.args: dict[str, str | None] = {}  # declared ARGs -> value (None: unset)
        self.declared_later: dict[str, int] = {}

    def add(self, diag: Diagnostic) -> None:
        self.diagnostics.append(diag)

    def span_in_value(self, inst: Instruction, start: int, end: int) -> Span:
        base = inst.value_offset
        return self.source.span(base + start, base + end)

    # -- ARG -------------------------------------------------------------------------------------
    def substitute(self, inst: Instruction) -> str:
        """Replace `${NAME}` for ARGs declared above; other text stays literal (Ollama's)."""
        value = inst.value
        if "${" not in value:
            return value
        out: list[str] = []
        pos = 0
        for m in _ARG_REF.finditer(value):
            name = m.group(1)
            if name not in self.args:
                if name in self.declared_later:
                    self.add(
                        codes.ARG_USED_BEFORE_DECLARATION(
                            self.span_in_value(inst, m.start(), m.end()),
                            f"`${{{name}}}` is used above `ARG {name}` and stays literal",
                            hint=f"move `ARG {name}` above this line",
                        )
                    )
                continue
            out.append(value[pos : m.start()])
            arg_value = self.args[name]
            if arg_value is None:
                self.add(
                    codes.UNSET_ARG(
                        self.span_in_value(inst, m.start(), m.end()),
                        f"ARG `{name}` has no value",
                        hint=f"pass `--build-arg {name}=…` or give a default: `ARG {name}=…`",
                        label="used here",
                    )
                )
                arg_value = ""
            out.append(arg_value)
            pos = m.end()
        out.append(value[pos:])
        return "".join(out)

    def substitute_flag(self, flag: Flag) -> Flag:
        """`--scale=${S}`: flag values take ARGs like any value."""
        if flag.value is None or "${" not in flag.value or flag.span is None:
            return flag
        at = flag.span.start + len(flag.name) + 3  # past `--name=`
        s = flag.span
        holder = Instruction(
            "ADAPTER",
            flag.value,
            value_span=Span(s.file, s.line, s.column, s.end_line, s.end_column, at, s.end),
        )
        return Flag(flag.name, self.substitute(holder), flag.span)

    def declare(self, inst: Instruction) -> None:
        value = inst.value
        name, eq, default = value.partition("=")
        if not _ARG_NAME.fullmatch(name):
            self.add(
                codes.INVALID_ARG(
                    self.span_in_value(inst, 0, len(name) or len(value)),
                    f"invalid ARG name `{name}`",
                    hint="write `ARG NAME` or `ARG NAME=default`; a name is letters, digits "
                    "and `_`, not starting with a digit",
                )
            )
            return
        if eq:
            substituted = self.substitute(
                Instruction(
                    "ARG", default, quote=inst.quote, value_span=_shift(inst, len(name) + 1)
                )
            )
            if len(substituted) >= 2 and substituted[0] == substituted[-1] == '"':
                substituted = substituted[1:-1]
            default_value: str | None = substituted
        else:
            default_value = None
        self.args[name] = self.build_args.get(name, default_value)

    # -- the pass --------------------------------------------------------------------------------
    def run(self, mf: Modelfile) -> ModelSpec | None:
        instructions = mf.instructions
        for index, inst in enumerate(instructions):
            if inst.keyword == "ARG":
                name = inst.value.partition("=")[0]
                self.declared_later.setdefault(name, index)

        last: dict[str, Instruction] = {}
        froms: list[tuple[Instruction, str]] = []
        drafts: list[tuple[Instruction, str]] = []
        adapters: list[AdapterRef] = []
        params: dict[str, Param] = {}
        param_lines: dict[str, Instruction] = {}
        stops: list[str] = []
        stop_span: Span | None = None
        licenses: list[Text] = []
        messages: list[Message] = []
        singles: dict[str, Text] = {}

        for inst in instructions:
            kw = inst.keyword
            if kw == "ARG":
                self.declare(inst)
                continue
            value = self.substitute(inst)
            span = inst.span or self.source.span(0, 0)
            if kw in _SINGLE:
                previous = last.get(kw)
                if previous is not None and kw != "FROM":  # FROM: after the loop
                    self.add(
                        codes.DUPLICATE_INSTRUCTION(
                            previous.keyword_span,
                            f"`{kw}` given again on line {span.line}; this one is ignored",
                            hint=f"keep one `{kw}` (the last one wins, as in Ollama)",
                            label="overridden",
                        )
                    )
                last[kw] = inst
            if kw == "FROM":
                froms.append((inst, self.check_ref(inst, value, "FROM")))
            elif kw == "DRAFT":
                drafts.append((inst, self.check_ref(inst, value, "DRAFT")))
            elif kw == "ADAPTER":
                adapter = self.check_adapter(inst, value)
                if adapter is not None:
                    adapters.append(adapter)
            elif kw == "PARAMETER":
                self.check_parameter(inst, value, params, param_lines, stops)
                if inst.name == "stop" and stop_span is None and stops:
                    stop_span = span
                    params["stop"] = Param("stop", (), span)  # keeps file order; filled below
            elif kw == "LICENSE":
                licenses.append(Text(value, span))
            elif kw == "MESSAGE":
                messages.append(Message(inst.role or "", value, span))
            elif kw == "REQUIRES":
                singles[kw] = Text(self.check_requires(inst, value), span)
            elif kw == "TEMPLATE":
                self.check_template(inst, value)
                singles[kw] = Text(value, span)
            elif kw in ("SYSTEM", "RENDERER", "PARSER"):
                singles[kw] = Text(value, span)
            else:  # the grammar admits only KEYWORDS; anything else would be silently dropped
                raise AssertionError(f"instruction keyword {kw!r} is not a Modelfile keyword")

        for name in sorted(set(self.build_args) - set(self.declared_later)):
            self.add(
                codes.UNUSED_BUILD_ARG(
                    None,
                    f"--build-arg `{name}` does not match any ARG in {self.source.name}",
                    hint=f"declare it with `ARG {name}` or drop the --build-arg",
                )
            )
        if not froms:
            self.add(
                codes.MISSING_FROM(
                    self.source.span(0, 0),
                    "no `FROM` instruction",
                    hint="every Modelfile names its base: add `FROM <model name or GGUF path>`",
                )
            )
            return None
        if stops:
            stop_at = stop_span or froms[-1][0].span
            assert stop_at is not None  # parsed instructions always carry their span
            params["stop"] = Param("stop", tuple(stops), stop_at)
        merged = self.check_repeated_from(froms)
        from_inst, from_value = froms[-1]
        draft = drafts[-1] if drafts else None
        if draft is not None:
            self.check_draft_differs(draft[0], draft[1], [value for _, value in froms])
        return ModelSpec(
            source=self.source.name,
            base=BaseRef(from_value, from_inst.span or self.source.span(0, 0)),
            merged_froms=merged,
            draft=BaseRef(draft[1], draft[0].span) if draft else None,  # type: ignore[arg-type]
            adapters=tuple(adapters),
            parameters=tuple(params.values()),
            template=singles.get("TEMPLATE"),
            system=singles.get("SYSTEM"),
            licenses=tuple(licenses),
            messages=tuple(messages),
            requires=singles.get("REQUIRES"),
            renderer=singles.get("RENDERER"),
            parser=singles.get("PARSER"),
            # Every declared ARG, used or not: `mfc show --modelfile` re-declares them, so the
            # rebuilt config records the same build args and gets the same digest.
            build_args=tuple(sorted((k, v or "") for k, v in self.args.items())),
        )

    def check_repeated_from(self, froms: list[tuple[Instruction, str]]) -> tuple[BaseRef, ...]:
        """Several FROM lines: merged when each is a local path (Ollama merges their files —
        a model and its projector — and only the builder, reading them, can tell a second
        model from a projector); otherwise the last wins and each earlier one is MF107."""
        if len(froms) < 2:
            return ()
        if all(self.is_local_path(value) for _, value in froms):
            return tuple(
                BaseRef(value, inst.span or self.source.span(0, 0)) for inst, value in froms[:-1]
            )
        for (previous, _), (later, _) in itertools.pairwise(froms):
            line = later.span.line if later.span is not None else 0
            self.add(
                codes.DUPLICATE_INSTRUCTION(
                    previous.keyword_span,
                    f"`FROM` given again on line {line}; this one is ignored",
                    hint="keep one `FROM` (the last one wins, as in Ollama)",
                    label="overridden",
                )
            )
        return ()

    def is_local_path(self, value: str) -> bool:
        """A FROM value Ollama reads as files: one that can only be a path, or (paths
        checked) one that exists relative to the Modelfile."""
        if looks_like_path(value):
            return True
        if self.base_dir is None or not value.strip():
            return False
        path = Path(os.path.expanduser(value))
        return (path if path.is_absolute() else self.base_dir / path).exists()

    # -- per instruction -------------------------------------------------------------------------
    def check_ref(self, inst: Instruction, value: str, kw: str) -> str:
        if not inst.value.strip():
            self.add(
                codes.EMPTY_VALUE(
                    inst.keyword_span,
                    f"`{kw}` has an empty value",
                    hint=f"name a model or a GGUF path, e.g. `{kw} llama3.2`",
                )
            )
            return value
        path_only = looks_like_path(value)
        if kw == "FROM" and "@" in value and not path_only:
            digest = value.rpartition("@")[2]
            if not is_digest(digest):
                at = value.rindex("@")
                self.add(
                    codes.INVALID_DIGEST(
                        self.span_in_value(inst, at + 1, len(value)),
                        f"invalid digest `{digest}`",
                        hint="pin a base as `name@sha256:<64 lower-case hex digits>`",
                        label="not sha256:<64 hex>",
                    )
                )
        if kw == "DRAFT" or path_only:
            self.check_path(inst, value, kw)
        return value

    def check_path(self, inst: Instruction, value: str, kw: str) -> None:
        if self.base_dir is None:
            return
        path = Path(os.path.expanduser(value))
        if not path.is_absolute():
            path = self.base_dir / path
        if glob.has_magic(str(path)):
            if glob.glob(str(path)):
                return
        elif path.exists():
            return
        if kw == "DRAFT" and not looks_like_path(value):
            return  # a model name; the builder resolves it
        self.add(
            codes.PATH_NOT_FOUND(
                inst.value_span,
                f"`{value}` does not exist",
                hint=f"{kw} paths are relative to the Modelfile's directory; `~` is your home",
                label="no such file or directory",
            )
        )

    def check_draft_differs(self, inst: Instruction, value: str, froms: list[str]) -> None:
        """Ollama refuses a DRAFT that is the same local path as a FROM."""
        if not looks_like_path(value):
            return
        base = self.base_dir or Path(".")

        def where(v: str) -> str:
            p = Path(os.path.expanduser(v))
            return os.path.normpath(p if p.is_absolute() else base / p)

        if any(looks_like_path(f) and where(f) == where(value) for f in froms):
            self.add(
                codes.DRAFT_SAME_AS_FROM(
                    inst.value_span,
                    f"DRAFT `{value}` is the same file as FROM",
                    hint="DRAFT names a smaller model that proposes tokens for the FROM model",
                )
            )

    def check_adapter(self, inst: Instruction, value: str) -> AdapterRef | None:
        scale = 1.0
        seen: set[str] = set()
        for raw in inst.flags:
            flag = self.substitute_flag(raw)
            if flag.name not in ADAPTER_FLAGS:
                match = difflib.get_close_matches(flag.name, ADAPTER_FLAGS, n=1, cutoff=0.5)
                self.add(
                    codes.INVALID_ADAPTER_FLAG(
                        flag.span,
                        f"unknown ADAPTER flag `--{flag.name}`",
                        hint=f"did you mean `--{match[0]}`?"
                        if match
                        else "the only flag is `--scale=F` (LoRA scale, default 1.0)",
                    )
                )
                continue
            if flag.name in seen:
                self.add(
                    codes.INVALID_ADAPTER_FLAG(
                        flag.span, f"`--{flag.name}` given twice", hint=f"give `--{flag.name}` once"
                    )
                )
            seen.add(flag.name)
            try:
                if flag.value is None or not re.fullmatch(
                    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", flag.value
                ):
                    raise ValueError
                scale = float(flag.value)
            except ValueError:
                self.add(
                    codes.INVALID_ADAPTER_FLAG(
                        flag.span,
                        f"`--scale` takes a number, not `{flag.value or ''}`",
                        hint="e.g. `ADAPTER --scale=0.5 ./adapter.gguf`",
                    )
                )
        if inst.quote is Quote.NONE and value.startswith("--") and " " not in value.strip():
            self.add(
                codes.EMPTY_VALUE(
                    inst.value_span,
                    f"`ADAPTER` has the flag `{value}` but no path",
                    hint=f"write `ADAPTER {value} ./adapter.gguf`",
                )
            )
            return None
        if not inst.value.strip():
            self.add(
                codes.EMPTY_VALUE(
                    inst.keyword_span,
                    "`ADAPTER` has no path",
                    hint="e.g. `ADAPTER ./adapter.gguf`",
                )
            )
            return None
        self.check_path(inst, value, "ADAPTER")
        return AdapterRef(value, scale, inst.span or self.source.span(0, 0))

    def check_parameter(
        self,
        inst: Instruction,
        value: str,
        params: dict[str, Param],
        lines: dict[str, Instruction],
        stops: list[str],
    ) -> None:
        name = inst.name or ""
        spec = PARAMETERS.get(name)
        if spec is None:
            guess = suggest(name)
            if name.lower() in INSTRUCTION_LIKE:
                kw = INSTRUCTION_LIKE[name.lower()]
                hint = f"`{name}` is not a parameter; write `{kw} {value}` instead"
            elif guess:
                hint = f"did you mean `{guess}`?"
            else:
                hint = "see `docs/modelfile.md` for the parameters llama.cpp understands"
            self.add(
                codes.UNKNOWN_PARAMETER(
                    inst.name_span, f"unknown parameter `{name}`", hint=hint, label="unknown"
                )
            )
            return
        if spec.deprecated:
            self.add(
                codes.DEPRECATED_PARAMETER(
                    inst.name_span,
                    f"parameter `{name}` is deprecated and ignored",
                    hint="remove this line (Ollama ignores it too)",
                )
            )
            return
        span = inst.span or self.source.span(0, 0)
        if spec.repeatable:
            if value == "":
                self.add(
                    codes.EMPTY_STOP(
                        inst.value_span or inst.name_span,
                        "empty stop sequence",
                        hint="an empty stop matches at once and ends every answer; remove it",
                    )
                )
            stops.append(value)
            return
        try:
            typed = parse_param_value(spec, value)
        except ParamValueError as exc:
            code = (
                codes.PARAMETER_OUT_OF_RANGE if exc.out_of_range else codes.INVALID_PARAMETER_VALUE
            )
            self.add(code(inst.value_span or inst.name_span, exc.message, hint=exc.hint))
            return
        if name in lines:
            self.add(
                codes.DUPLICATE_PARAMETER(
                    lines[name].span,
                    f"`{name}` is set again on line {span.line}; this value is ignored",
                    hint="keep one line per parameter (the last one wins)",
                    label="overridden",
                )
            )
        lines[name] = inst
        params[name] = Param(name, typed, span)

    def check_requires(self, inst: Instruction, value: str) -> str:
        if not _SEMVER.fullmatch(value):
            self.add(
                codes.INVALID_REQUIRES(
                    inst.value_span or inst.keyword_span,
                    f"`{value}` is not a semantic version",
                    hint="write a version like `0.6.0` (a leading `v` is allowed)",
                )
            )
            return value
        return value.removeprefix("v")

    def check_template(self, inst: Instruction, value: str) -> None:
        # Imported here, not at the top: jinja2 and the Go-template parser cost ~0.2 s of
        # start-up that Modelfiles without TEMPLATE (and `mfc parse`) need not pay.
        from mfc.template import check_template

        problem = check_template(value, warnings=True)
        if problem is None:
            return
        starts = line_starts(value)
        line = max(1, min(problem.line, len(starts)))
        offset = min(starts[line - 1] + max(problem.column - 1, 0), len(value))
        end = min(offset + 1, len(value)) if value else offset
        span = self.span_in_value(inst, offset, max(end, offset))
        if getattr(problem, "severity", "error") == "warning":
            # It renders some conversations but refuses others (e.g. a system message).
            self.add(
                codes.TEMPLATE_RAISES(
                    span,
                    f"template fails for some conversations: {problem.message}",
                    hint="avoid that conversation shape (e.g. no SYSTEM) or adapt the template",
                )
            )
            return
        hint = _TEMPLATE_HINT.get(getattr(problem, "syntax", ""), _TEMPLATE_HINT[""])
        if "(the template time budget)" in problem.message or "(the template output budget)" in (
            problem.message
        ):
            hint = _BUDGET_HINT
        self.add(codes.INVALID_TEMPLATE(span, f"template error: {problem.message}", hint=hint))


def _shift(inst: Instruction, by: int) -> Span | None:
    """A value span starting ``by`` characters into ``inst``'s value (for ARG defaults)."""
    if inst.value_span is None:
        return None
    s = inst.value_span
    return Span(s.file, s.line, s.column, s.end_line, s.end_column, s.start + by, s.end)
