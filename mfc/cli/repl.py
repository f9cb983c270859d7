"""The interactive chat of `mfc run NAME` on a terminal (Ollama's `ollama run` REPL).

Terminal handling only: every decision about prompts, parameters and models
is made by `mfc.runtime.session.Session`. Ctrl-C while the model answers stops
that answer (the engine sees a flag at its next step); Ctrl-C at the
prompt is ignored with a hint; Ctrl-D or `/bye` leaves. Image paths in a message
(`./cat.png`, or a line starting `/tmp/cat.png`) become images, as in Ollama's CLI.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.runtime.image_paths import is_command_path, prompt_images
from mfc.runtime.model import ModelImage
from mfc.runtime.options import UNSUPPORTED, unsupported_warning
from mfc.runtime.session import Session, Turn
from mfc.runtime.stats import format_stats

if TYPE_CHECKING:
    from mfc.build import BuildResult
    from mfc.store.store import Store

COMMANDS = frozenset(("/bye", "/exit", "/?", "/help", "/clear", "/set", "/show", "/load", "/save"))

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""

HELP_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set template <string> Set prompt template
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking
"""

HELP_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""

HELP_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit (/bye)
  Ctrl + l            Clear the screen (with readline)
  \"\"\"                 Begin and end a multi-line message
"""


@contextlib.contextmanager
def sigint_for_main_thread() -> Iterator[None]:
    """Threads started inside (numpy's BLAS pool, the engine's worker and its
    OpenMP team) inherit a mask blocking SIGINT, so Ctrl-C is always delivered
    to the main thread: a SIGINT taken by another thread would wait for the
    main thread's next wake-up (at the REPL prompt, the next keystroke)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class WordWrap:
    """Wraps streamed text at word boundaries to the terminal width (Ollama's default).

    Spaces are held until the next word shows whether it fits on the line; at a
    wrap they are dropped, so no line ends in blanks.
    """

    def __init__(self, out: TextIO, width: int | None):
        self.out = out
        self.width = width
        self.column = 0
        self.word = ""
        self.spaces = 0

    def write(self, text: str) -> None:
        if not self.width:
            self.out.write(text)
            self.out.flush()
            return
        for ch in text:
            if ch == "\n":
                self._flush_word()
                self.out.write(" " * self.spaces + "\n")
                self.column = self.spaces = 0
            elif ch == " ":
                self._flush_word()
                self.spaces += 1
            else:
                self.word += ch
                if len(self.word) >= self.width:  # a word longer than a line: hard break
                    self._flush_word()
        self.out.flush()

    def _flush_word(self) -> None:
        if not self.word:
            return
        assert self.width
        if self.column + self.spaces + len(self.word) > self.width:
            if self.column:
                self.out.write("\n")
            self.column = self.spaces = 0
        self.out.write(" " * self.spaces + self.word)
        self.column += self.spaces + len(self.word)
        self.word = ""
        self.spaces = 0

    def finish(self) -> None:
        self._flush_word()
        if self.spaces and self.width:
            self.out.write(" " * self.spaces)
        self.out.flush()
        self.column = self.spaces = 0


GREY = "\033[38;5;245m"
BOLD = "\033[1m"
RESET = "\033[0m"


def thinking_opening(plain: bool) -> str:
    """What Ollama's CLI prints before the thinking (grey, the header bold)."""
    return "Thinking...\n" if plain else f"{GREY}{BOLD}Thinking...\n{RESET}{GREY}"


def thinking_closing(plain: bool) -> str:
    return "...done thinking.\n\n" if plain else f"{GREY}{BOLD}...done thinking.\n\n{RESET}"


def write_answer(
    turn: Turn, out: TextIO, width: int | None, *, hide_thinking: bool = False, plain: bool = False
) -> None:
    """Stream ``turn`` as `ollama run` shows it: "Thinking...", the thinking, "...done
    thinking.", then the answer (``hide_thinking`` leaves the thinking out; ``plain`` drops
    the colours, as Ollama does when stdout is not a terminal)."""
    printer = WordWrap(out, width)
    opened = closed = False
    thought = ""
    for part in turn.parsed():
        if part.thinking and not hide_thinking:
            if not opened:
                out.write(thinking_opening(plain))
                opened = True
            thought += part.thinking
            printer.write(part.thinking)
        if opened and not closed and (part.content or part.tool_calls):
            printer.finish()
            if not thought.endswith("\n"):
                out.write("\n")
            out.write(thinking_closing(plain))
            closed = True
            printer = WordWrap(out, width)
        if part.content:
            printer.write(part.content)
    printer.finish()


class Repl:
    def __init__(
        self,
        session: Session,
        *,
        load_image: Callable[[str], ModelImage],
        verbose: bool = False,
        wordwrap: bool = True,
        hide_thinking: bool = False,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
        read: Callable[[str], str] = input,
    ):
        self.session = session
        self.load_image = load_image
        self.verbose = verbose
        self.wordwrap = wordwrap
        self.hide_thinking = hide_thinking
        self.out = out
        self.err = err
        self.read = read
        self.history = True  # `/set nohistory`: lines read are not kept for up-arrow recall
        self._readline: Any = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"warning: {text}", file=self.err, flush=True)

    def error(self, exc: DiagnosticError) -> None:
        from mfc.diagnostics.render import render_human

        self.out.write(render_human(exc.diagnostics, exc.sources))
        self.out.flush()

    # -- input -----------------------------------------------------------------

    def _read(self, prompt: str) -> str:
        """One line; with history off, readline forgets it again (input() adds every line)."""
        line = self.read(prompt)
        rl = self._readline
        if not self.history and rl is not None and line:
            n = rl.get_current_history_length()
            if n and rl.get_history_item(n) == line:
                rl.remove_history_item(n - 1)
        return line

    def read_message(self) -> str | None:
        """One user input, joining `\"\"\"` multi-line blocks; None on Ctrl-D."""
        try:
            line = self._read(">>> ")
        except EOFError:
            return None
        start = line.find('"""')
        if start < 0:
            return line
        head, rest = line[:start], line[start + 3 :]
        end = rest.find('"""')
        if end >= 0:  # opened and closed on one line, e.g. /set system """x"""
            return head + rest[:end]
        lines = [rest] if rest else []
        while True:
            try:
                more = self._read("... ")
            except EOFError:
                return None
            end = more.find('"""')
            if end >= 0:
                lines.append(more[:end])
                return head + "\n".join(lines)
            lines.append(more)

    # -- loop ------------------------------------------------------------------

    def run(self) -> int:
        with contextlib.suppress(ImportError):
            import readline  # line editing and history for input()

            self._readline = readline
        while True:
            try:
                text = self.read_message()
            except KeyboardInterrupt:
                self.say("\nUse Ctrl + d or /bye to exit.")
                continue
            if text is None:
                self.say("")
                return 0
            if not text.strip():
                continue
            try:
                if text.startswith("/") and not self._image_line(text):
                    if self.command(text) == "bye":
                        return 0
                else:
                    self.answer(text)
            except DiagnosticError as exc:
                self.error(exc)
            except KeyboardInterrupt:
                self.say("")

    def _image_line(self, text: str) -> bool:
        """A line like `/tmp/cat.png what is this` is a message, not an unknown command
        (Ollama's test; its own commands come first, so `/set system ./a.png` still sets)."""
        return text.split()[0] not in COMMANDS and is_command_path(text)

    def answer(self, text: str) -> None:
        image = self.session.image
        prompt, found = prompt_images(
            text, vision="vision" in image.capabilities(), model=image.name
        )
        for each in found:
            print(f"Added image '{each.path}'", file=self.err, flush=True)
        turn = self.session.ask(prompt, [each.data for each in found])
        width = shutil.get_terminal_size((80, 24)).columns - 5 if self.wordwrap else None
        try:
            write_answer(turn, self.out, width, hide_thinking=self.hide_thinking)
        except KeyboardInterrupt:
            turn.cancel()
        self.say("\n")
        for warning in turn.warnings:
            self.warn(warning)
        if self.verbose and turn.stats is not None:
            print(format_stats(turn.stats), file=self.err, flush=True)

    # -- commands ----------------------------------------------------------------

    def command(self, line: str) -> str | None:
        words = line.split()
        cmd, args = words[0], words[1:]
        if cmd in ("/bye", "/exit"):
            return "bye"
        if cmd in ("/?", "/help"):
            topic = args[0] if args else ""
            self.say(
                {"set": HELP_SET, "show": HELP_SHOW, "shortcuts": HELP_SHORTCUTS}.get(topic, HELP)
            )
        elif cmd == "/clear":
            self.session.clear()
            self.say("Cleared session context")
        elif cmd == "/set":
            self.set(line, args)
        elif cmd == "/show":
            self.show(args[0] if args else "")
        elif cmd == "/load":
            if len(args) != 1:
                self.say("Usage:\n  /load <modelname>")
                return None
            with sigint_for_main_thread():
                image = self.load_image(args[0])
                self.say(f"Loading model '{args[0]}'")
                self.session.load(image)
                self.session.engine()
        elif cmd == "/save":
            if len(args) != 1:
                self.say("Usage:\n  /save <modelname>")
                return None
            save_session(self.session, args[0])
            self.say(f"Created new model '{args[0]}'")
        else:
            self.say(f"Unknown command '{cmd}'. Type /? for help")
        return None

    def set(self, line: str, args: list[str]) -> None:
        if not args:
            self.say(HELP_SET)
            return
        what = args[0]
        if what == "parameter":
            if len(args) < 3:
                from mfc.modelfile.params import PARAMETERS

                self.say("Available Parameters:")
                for spec in PARAMETERS.values():
                    if not spec.deprecated:
                        doc = spec.doc + (
                            " (not supported yet)" if spec.name in UNSUPPORTED else ""
                        )
                        self.say(f"  /set parameter {spec.name:<18} {doc}")
                return
            name = args[1]
            self.session.set_parameter(name, args[2:])
            self.say(f"Set parameter '{name}' to '{', '.join(args[2:])}'")
            warning = unsupported_warning(name)
            if warning:
                self.warn(f"{warning}; it has no effect")
        elif what in ("system", "template"):
            text = line.split(what, 1)[1].strip()
            if text.startswith('"') and text.endswith('"') and len(text) >= 2:
                text = text[1:-1]
            if what == "system":
                self.session.system = text
                self.say("Set system message.")
            else:
                warning = self.session.set_template(text)  # a broken one raises, unchanged
                self.say("Set prompt template.")
                if warning:
                    self.warn(f"template: {warning}")
        elif what == "verbose":
            self.verbose = True
            self.say("Set 'verbose' mode.")
        elif what == "quiet":
            self.verbose = False
            self.say("Set 'quiet' mode.")
        elif what == "format":
            if args[1:] != ["json"]:
                self.say("Invalid or missing format. For 'json' mode use '/set format json'")
                return
            self.session.format = "json"
            self.say("Set format to 'json' mode.")
        elif what in ("think", "nothink"):
            level = args[1] if what == "think" and len(args) > 1 else ""
            if level and level not in ("low", "medium", "high", "max"):
                self.say(
                    f'error: invalid think value: "{level}" (must be "high", "medium", '
                    '"low", "max", true, or false)'
                )
                return
            self.session.think = (level or True) if what == "think" else False
            if not self.session.can_think():
                self.warn(f'model "{self.session.image.name}" does not support thinking output')
            if what == "nothink":
                self.say("Set 'nothink' mode.")
            else:
                self.say(f"Set 'think' mode to '{level}'." if level else "Set 'think' mode.")
        elif what == "noformat":
            self.session.format = None
            self.say("Disabled format.")
        elif what in ("wordwrap", "nowordwrap"):
            self.wordwrap = what == "wordwrap"
            self.say("Set 'wordwrap' mode." if self.wordwrap else "Set 'nowordwrap' mode.")
        elif what in ("history", "nohistory"):
            self.history = what == "history"
            self.say(f"Set '{what}' mode.")
        else:
            self.say(f"Unknown command '/set {what}'. Type /? for help")

    def show(self, what: str) -> None:
        from mfc.store.show import format_show, parameters_text

        s = self.session
        image = s.image
        if what == "info":
            num_ctx = str(s.resolved().values["num_ctx"])
            params = {**image.params, **s.overrides}
            info = format_show(
                image,
                params=params,
                system=s.effective_system() or "",
                extra=[("num_ctx (effective)", num_ctx)],
            )
            self.say(info)
        elif what == "license":
            self.say("\n\n".join(image.licenses) if image.licenses else "No license was specified")
        elif what == "modelfile":
            self.say(s.modelfile())
        elif what == "parameters":
            if not image.params and not s.overrides:
                self.say("No parameters were specified for this model.")
            if image.params:
                self.say("Model defined parameters:")
                self.say(parameters_text(image.params))
            if s.overrides:
                self.say("User defined parameters:")
                self.say(parameters_text(s.overrides))
        elif what == "system":
            system = s.effective_system()
            self.say(system if system else "No system message was specified for this model.")
        elif what == "template":
            t = s.prompt_template()
            if t.text is not None:
                self.say(t.text)
            else:  # the origin says why (e.g. a built-in's tokens missing from the vocabulary)
                self.say(f"No prompt template was specified: {t.origin}.")
        else:
            self.say(HELP_SHOW)


def save_session(session: Session, name: str, store: Store | None = None) -> BuildResult:
    """`/save NAME`: build the session's Modelfile (FROM the running model) as a real model.

    The session renders the Modelfile; building it is the CLI's job, so the
    runtime never imports the builder (the layer contract: build and runtime are
    siblings).
    """
    from pathlib import Path

    from mfc.build import build_text
    from mfc.store.store import Store

    text = session.save_modelfile()
    store = store if store is not None else Store.from_env()
    return build_text(text, Path.cwd(), name, store=store, source="<mfc run /save>")
