"""`mfc run` and `mfc template render`: wiring only (logic lives in mfc.runtime)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mfc.diagnostics.diagnostic import DiagnosticError

if TYPE_CHECKING:
    from mfc.runtime.model import ModelImage
    from mfc.runtime.session import Session


def _image(name: str) -> ModelImage:
    """A model from the store, or a GGUF file run as a bare model.

    Paths are what `mfc.modelfile.refs.looks_like_path` says can only be a path
    (`*.gguf`, `./x`, `../x`, `/x`, `~/x`, …) and existing files named with a `/`;
    a missing one is "no such file" (MF301), not a complaint about model-name
    syntax. Other names (`llama3`, `user/model:tag`) are looked up in the store.
    """
    from mfc.diagnostics import codes
    from mfc.modelfile.refs import looks_like_path
    from mfc.runtime.model import image_from_gguf, load_image

    path = Path(name).expanduser()
    if looks_like_path(name) or ("/" in name and path.exists()):
        if path.is_file():
            return image_from_gguf(path)
        if path.is_dir():
            raise codes.MODEL_NOT_FOUND.error(
                f"`{name}` is a directory, not a GGUF model file",
                hint=f"to build the Modelfile in it: `mfc build -t NAME {name}`",
            )
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise codes.MODEL_NOT_FOUND.error(
            f"no such file: `{name}`{where}",
            hint="give the path of a GGUF model file, or a model name from `mfc list`",
        )
    try:
        return load_image(name)
    except DiagnosticError as exc:
        first = exc.diagnostics[0]
        if "/" not in name or first.code != codes.MODEL_NOT_FOUND.code:
            raise
        # `dir/x` reads as a namespaced model name and as a relative path: say both were tried.
        raise codes.MODEL_NOT_FOUND.error(
            f"{first.message}, and there is no file `{name}` either", hint=first.hint
        ) from None


def _fail(exc: DiagnosticError) -> None:
    from mfc.diagnostics.render import render_human

    click.echo(render_human(exc.diagnostics), err=True, nl=False)
    sys.exit(1)


def _prompt_images(session: Session, text: str) -> tuple[str, list[bytes]]:
    """The prompt without its image paths and the images' bytes (Ollama's CLI prints
    "Added image" for each on stderr); MF311/MF312 before anything loads."""
    from mfc.runtime.image_paths import prompt_images

    image = session.image
    prompt, images = prompt_images(text, vision="vision" in image.capabilities(), model=image.name)
    for found in images:
        click.echo(f"Added image '{found.path}'", err=True)
    return prompt, [found.data for found in images]


THINK_VALUES: dict[str, bool | str] = {"": True, "true": True, "false": False}
THINK_VALUES.update((level, level) for level in ("high", "medium", "low", "max"))


class _RunCommand(click.Command):
    """`--think` takes its value only as `--think=VALUE` (cobra's NoOptDefVal, as `ollama
    run`): a bare `--think` means true and never swallows the prompt after it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = ["--think=true" if a == "--think" else a for a in args]
        return super().parse_args(ctx, args)


def _think_value(value: str | None) -> bool | str | None:
    if value is None:
        return None
    if value not in THINK_VALUES:
        raise click.UsageError(
            f'invalid value for --think: "{value}" (must be true, false, high, medium, low, or max)'
        )
    return THINK_VALUES[value]


@click.command(cls=_RunCommand)
@click.argument("name")
@click.argument("prompt", nargs=-1)
@click.option("--verbose", is_flag=True, help="Print timings and token rates after each answer.")
@click.option(
    "--format", "fmt", type=click.Choice(["json"]), help="Constrain the answer to JSON (grammar)."
)
@click.option("--nowordwrap", is_flag=True, help="Do not wrap long lines at word boundaries.")
@click.option(
    "--think",
    metavar="[=true|false|high|medium|low]",
    help="Thinking: --think (true), --think=false, or a level, for models that can think.",
)
@click.option("--hidethinking", is_flag=True, help="Hide the thinking output (if any).")
@click.option(
    "--keepalive",
    metavar="DURATION",
    help="Accepted for `ollama run` compatibility; no effect (mfc runs in-process).",
)
def run(
    name: str,
    prompt: tuple[str, ...],
    verbose: bool,
    fmt: str | None,
    nowordwrap: bool,
    think: str | None,
    hidethinking: bool,
    keepalive: str | None,
) -> None:
    """Run NAME: answer PROMPT (or piped stdin) and exit, or chat on a terminal.

    \b
    mfc run counter "abc"            one answer, streamed to stdout
    echo abc | mfc run counter       the same, prompt from stdin
    mfc run counter                  interactive chat on a terminal (/? for help)
    mfc run counter </dev/null       no terminal, empty prompt: load the model, exit
    """
    from mfc.cli.repl import sigint_for_main_thread
    from mfc.runtime.session import Session
    from mfc.runtime.stats import format_stats

    think_value = _think_value(think)
    parts = list(prompt)
    # Like `ollama run`: the REPL only on a terminal; otherwise stdin (possibly empty,
    # `</dev/null`) is read as the prompt and this is a one-shot run.
    interactive = sys.stdin.isatty() and not parts
    if not sys.stdin.isatty():
        piped = sys.stdin.read().rstrip("\n")  # `echo abc |` means the prompt `abc`
        if piped:
            parts.insert(0, piped)
    try:
        with sigint_for_main_thread():
            session = Session(_image(name), format=fmt, think=think_value)
            session.check_think()
            if parts:  # image paths are read and checked before the model loads
                text, images = _prompt_images(session, " ".join(parts))
            if not parts:
                session.engine()  # load now, as `ollama run` does: errors show before the prompt
        if not parts and not interactive:
            return  # an empty prompt only loads the model (Ollama's generate does the same)
        if not parts:
            from mfc.cli.repl import Repl

            repl = Repl(
                session,
                load_image=_image,
                verbose=verbose,
                wordwrap=not nowordwrap,
                hide_thinking=hidethinking,
            )
            raise SystemExit(repl.run())
        from mfc.cli.repl import write_answer

        tty = sys.stdout.isatty()
        width = os.get_terminal_size().columns - 5 if not nowordwrap and tty else None
        turn = session.ask(text, images)
        try:
            write_answer(turn, sys.stdout, width, hide_thinking=hidethinking, plain=not tty)
        except KeyboardInterrupt:
            turn.cancel()
        except BrokenPipeError:  # `mfc run m p | head`: stop generating, quietly
            turn.cancel()
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0) from None
        except BaseException:
            turn.cancel()
            raise
        click.echo("")
        sys.stdout.flush()  # the answer before any warning or stats on stderr
        for warning in turn.warnings:
            click.echo(f"warning: {warning}", err=True)
        if verbose and turn.stats is not None:
            click.echo(format_stats(turn.stats), err=True)
    except DiagnosticError as exc:
        _fail(exc)
    finally:
        if "session" in locals():
            session.close()


@click.group()
def template() -> None:
    """Inspect prompt templates."""


@template.command("render")
@click.argument("name")
@click.option("--system", "system", help="System message (replaces the model's SYSTEM).")
@click.option(
    "--message",
    "messages",
    multiple=True,
    metavar="ROLE:TEXT",
    help="An earlier turn, e.g. user:hi or assistant:hello (repeatable).",
)
@click.option("--prompt", help="The new user message (omit to render the history only).")
def render(name: str, system: str | None, messages: tuple[str, ...], prompt: str | None) -> None:
    """Print the exact prompt text NAME's model would see."""
    from mfc.runtime.model import ChatMessage
    from mfc.runtime.session import Session

    history = []
    for item in messages:
        role, sep, text = item.partition(":")
        if not sep or role not in ("system", "user", "assistant", "tool"):
            raise click.BadParameter(
                f"{item!r}: expected ROLE:TEXT with ROLE system, user, assistant or tool",
                param_hint="--message",
            )
        history.append(ChatMessage(role, text))
    try:
        session = Session(_image(name))
        session.system = system
        session.history = history
        text = session.render(prompt)
        # Exact bytes on a pipe; on a terminal, end the line so the shell prompt is not glued on.
        tty = sys.stdout.isatty() and not text.endswith("\n")
        click.echo(text, nl=tty)
    except DiagnosticError as exc:
        _fail(exc)
