"""The `mfc` command group.

Subcommands are imported only when invoked, so `mfc --help`, `mfc check` and
`mfc list` never pay for importing llama_cpp or numpy.
"""

from __future__ import annotations

import importlib

import click

# name -> ("module", "attribute", "one-line help"); the help is here so that
# `mfc --help` does not import every command module.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "parse": ("mfc.cli.modelfile_cmds", "parse", "Parse Modelfiles (syntax only)."),
    "check": ("mfc.cli.modelfile_cmds", "check", "Check Modelfiles: syntax and semantics."),
    "fmt": ("mfc.cli.modelfile_cmds", "fmt", "Rewrite Modelfiles in canonical form."),
    "build": ("mfc.cli.build_cmds", "build", "Build a model image from a Modelfile."),
    "create": ("mfc.cli.build_cmds", "create", "Ollama-style alias: create NAME -f Modelfile."),
    "list": ("mfc.cli.store_cmds", "list_", "List models in the store."),
    "show": ("mfc.cli.store_cmds", "show", "Show a model's details."),
    "rm": ("mfc.cli.store_cmds", "rm", "Remove models."),
    "cp": ("mfc.cli.store_cmds", "cp", "Copy a model to a new name."),
    "gc": ("mfc.cli.store_cmds", "gc", "Remove unreferenced blobs."),
    "verify": ("mfc.cli.store_cmds", "verify", "Re-hash blobs and report corruption."),
    "save": ("mfc.cli.store_cmds", "save", "Save models as an OCI image layout."),
    "load": ("mfc.cli.store_cmds", "load", "Load models from an OCI image layout tarball."),
    "pull": ("mfc.cli.pull_cmds", "pull", "Pull a model from a registry."),
    "push": ("mfc.cli.registry_cmds", "push", "Push a model to a registry."),
    "login": ("mfc.cli.registry_cmds", "login", "Log in to a registry."),
    "logout": ("mfc.cli.registry_cmds", "logout", "Log out from a registry."),
    "run": ("mfc.cli.run_cmds", "run", "Run a model: one prompt, or an interactive chat."),
    "template": ("mfc.cli.run_cmds", "template", "Inspect prompt templates."),
    "serve": ("mfc.cli.serve_cmds", "serve", "Serve Ollama's HTTP API (127.0.0.1:11434)."),
    "ps": ("mfc.cli.serve_cmds", "ps", "List models loaded by a running server."),
    "stop": ("mfc.cli.serve_cmds", "stop", "Unload a model from a running server."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return None  # command not built yet
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mfc", prog_name="mfc")  # resolved only when asked
def cli() -> None:
    """mfc — the Modelfile compiler.

    Build Ollama Modelfiles into content-addressed model images and run them on llama.cpp.
    """


def main() -> None:
    cli(prog_name="mfc")
