"""Sessions on real llama.cpp: prompt building, parameter precedence, conversation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.runtime.model import ChatMessage, ModelImage, image_from_gguf
from mfc.runtime.prompt import PromptTemplate, render
from mfc.runtime.session import Session

GO_TEMPLATE = (
    "{{ if .System }}<sys>{{ .System }}</sys>\n{{ end }}"
    '{{ range .Messages }}{{ if ne .Role "system" }}'
    "{{ .Role }}: {{ .Content }}\n{{ end }}{{ end }}"
    "> "
)
GREEDY = {"temperature": 0.0}


@pytest.fixture
def counter(fixture_models: dict[str, Path]) -> Path:
    return fixture_models["counter-f32.gguf"]


def session(path: Path, **image_fields: object) -> Session:
    params = {**GREEDY, **dict(image_fields.pop("params", {}))}  # type: ignore[arg-type]
    return Session(image_from_gguf(path, params=params, **image_fields), env={})  # type: ignore[arg-type]


def answer(s: Session, prompt: str) -> str:
    return s.ask(prompt).result()


def test_gguf_chat_template_is_used_without_template_layer(counter: Path) -> None:
    s = session(counter)
    assert s.prompt_template().kind == "gguf"
    assert s.render("abc") == "<s>[user]abc"
    assert answer(s, "abc") == "defghijklmnopqrstuvwxyz"
    s.close()


def test_template_layer_is_applied(counter: Path, snapshot) -> None:
    s = session(
        counter,
        template=GO_TEMPLATE,
        system="be brief",
        messages=(ChatMessage("user", "abc"), ChatMessage("assistant", "def")),
    )
    assert s.prompt_template().kind == "template"
    prompt = s.render("klm")
    assert prompt == snapshot
    assert prompt.startswith("<sys>be brief</sys>\n")  # SYSTEM first
    assert "user: abc\nassistant: def\nuser: klm\n" in prompt  # MESSAGEs before the turn
    s.close()


def test_system_and_messages_reach_the_model(counter: Path) -> None:
    s = session(
        counter,
        system="sys",
        messages=(ChatMessage("user", "abc"), ChatMessage("assistant", "def")),
    )
    assert s.render("ghi") == "<s>[system]sys\n[user]abc\n[assistant]def\n[user]ghi"
    # the counter continues the last character of the prompt
    assert answer(s, "ghi") == "jklmnopqrstuvwxyz"
    s.set_parameter("num_predict", ["2"])
    s.system = "override"
    assert s.render("x").startswith("<s>[system]override\n")
    s.close()


def test_raw_prompt_concatenates_messages() -> None:
    image = ModelImage("raw", Path("unused.gguf"))
    msgs = [ChatMessage("user", "abc"), ChatMessage("assistant", "def"), ChatMessage("user", "g")]
    assert render(PromptTemplate("raw", None, "raw"), msgs, image=image) == "abcdefg"


def test_modelfile_params_take_effect_and_set_parameter_overrides(counter: Path) -> None:
    s = session(counter, params={"num_predict": 3})
    assert answer(s, "abc") == "def"
    s.set_parameter("num_predict", ["5"])
    assert answer(s, "abc") == "defgh"
    s.set_parameter("stop", ["g"])
    assert answer(s, "abc") == "def"
    s.close()


def test_stop_parameter_from_the_image(counter: Path) -> None:
    s = session(counter, params={"stop": ("jk", "zz")})
    assert answer(s, "abc") == "defghi"
    s.close()


def test_load_time_change_reloads_sampling_change_does_not(counter: Path) -> None:
    s = session(counter)
    first = s.engine()
    s.set_parameter("temperature", ["0"])
    s.set_parameter("top_k", ["10"])
    assert s.engine() is first
    s.set_parameter("num_ctx", ["256"])
    second = s.engine()
    assert second is not first
    assert second.n_ctx == 256
    assert answer(s, "abc") == "defghijklmnopqrstuvwxyz"
    s.close()


def test_load_duration_is_reported_once(counter: Path) -> None:
    s = session(counter)
    t1 = s.ask("abc")
    t1.result()
    t2 = s.ask("abc")
    t2.result()
    assert t1.stats is not None and t2.stats is not None
    assert t1.stats.load_duration > 0
    assert t2.stats.load_duration == 0
    assert t1.stats.eval_count == 23
    s.close()


def test_num_ctx_is_clamped_to_trained_context_with_a_warning(counter: Path) -> None:
    s = session(counter, params={"num_ctx": 100_000})
    turn = s.ask("abc")
    turn.result()
    assert s.engine().n_ctx == 512
    assert any("trained context 512" in w for w in turn.warnings)
    s.close()


def test_default_num_ctx_follows_env_and_clamps_quietly(counter: Path) -> None:
    image = image_from_gguf(counter, params=GREEDY)
    assert Session(image, env={}).resolved().values["num_ctx"] == 512
    assert Session(image, env={"MFC_CONTEXT_LENGTH": "128"}).resolved().values["num_ctx"] == 128
    assert Session(image, env={}).resolved().warnings == ()


def test_conversation_is_kept_and_cleared(counter: Path) -> None:
    s = session(counter, params={"num_predict": 3})
    assert answer(s, "abc") == "def"
    assert s.render("x") == "<s>[user]abc\n[assistant]def\n[user]x"
    assert answer(s, "klm") == "nop"
    assert [m.content for m in s.history] == ["abc", "def", "klm", "nop"]
    s.clear()
    assert s.render("x") == "<s>[user]x"
    s.close()


def test_cancelled_turn_is_not_remembered(counter: Path) -> None:
    s = session(counter)
    turn = s.ask("abc")
    next(iter(turn))
    turn.cancel()
    assert turn.stats is not None and turn.stats.done_reason == "cancel"
    assert s.history == []
    s.close()


def test_old_turns_are_dropped_to_fit_num_ctx(counter: Path) -> None:
    s = session(counter, params={"num_ctx": 40, "num_predict": 5})
    warnings: list[str] = []
    for prompt in ["abc", "ghi", "mno", "stu"]:
        turn = s.ask(prompt)
        turn.result()
        warnings += turn.warnings
    assert any("dropped" in w for w in warnings)
    assert s.history[-2:] == [ChatMessage("user", "stu"), ChatMessage("assistant", "vwxyz")]
    assert len(s.history) < 8
    s.close()


def test_prompt_longer_than_num_ctx_is_a_located_error(counter: Path) -> None:
    s = session(counter, params={"num_ctx": 16})
    with pytest.raises(DiagnosticError) as info:
        s.ask("a" * 40)
    (d,) = info.value.diagnostics
    assert d.code == "MF303"
    assert "num_ctx 16" in d.message
    assert d.hint and "num_ctx" in d.hint
    s.close()


@pytest.mark.parametrize(
    ("name", "words", "message"),
    [
        ("temprature", ["1"], "did you mean `temperature`"),
        ("top_k", ["many"], "integer"),
        ("top_p", ["2"], "top_p"),
        ("num_predict", [], "missing a value"),
    ],
)
def test_set_parameter_rejects_bad_input(
    counter: Path, name: str, words: list[str], message: str
) -> None:
    s = session(counter)
    with pytest.raises(DiagnosticError) as info:
        s.set_parameter(name, words)
    d = info.value.diagnostics[0]
    assert d.code == "MF306"
    assert message in f"{d.message} {d.hint}"
    assert s.overrides == {}


def test_format_json_constrains_answer(counter: Path) -> None:
    s = session(counter, params={"num_predict": 10})
    s.format = "json"
    assert answer(s, "abc").startswith("{")
    s.close()


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{% for m in messages %}{{ m.__class__.__base__.__subclasses__() }}{% endfor %}",
    ],
)
def test_sandbox_escapes_fail_with_the_origin(counter: Path, template: str) -> None:
    s = session(counter, template=template)
    with pytest.raises(DiagnosticError) as info:
        s.render("abc")
    (d,) = info.value.diagnostics
    assert d.code == "MF307"
    assert "TEMPLATE of model" in d.message
    s.template = template
    with pytest.raises(DiagnosticError, match="/set template"):
        s.render("abc")


def test_unloadable_model_is_a_diagnostic(fixture_models: dict[str, Path]) -> None:
    s = session(fixture_models["counter-f32.gguf"])
    s.image = dataclasses.replace(s.image, model_path=fixture_models["truncated.gguf"])
    with pytest.raises(DiagnosticError) as info:
        s.ask("abc")
    assert info.value.diagnostics[0].code == "MF308"


def test_settings_warnings_are_given_once(counter: Path) -> None:
    s = session(counter, params={"num_ctx": 100_000, "num_predict": 1})
    first = s.ask("abc")
    first.result()
    second = s.ask("abc")
    second.result()
    assert any("trained context" in w for w in first.warnings)
    assert not any("trained context" in w for w in second.warnings)
    s.close()


def test_session_modelfile_views(counter: Path, snapshot) -> None:
    s = session(
        counter,
        template=GO_TEMPLATE,
        system="be brief",
        messages=(ChatMessage("user", "abc"), ChatMessage("assistant", "def")),
        params={"stop": ("<|end|>", "x y")},
    )
    s.image = dataclasses.replace(s.image, name="counter", digest="sha256:" + "ab" * 32)
    s.set_parameter("num_predict", ["3"])
    s.system = "two\nlines"
    answer = s.ask("klm").result()
    shown = s.modelfile()
    saved = s.modelfile(for_save=True)
    assert {"show": shown, "save": saved} == snapshot
    assert saved.startswith("FROM counter@sha256:abab")  # pinned to the running image
    assert "PARAMETER stop" not in saved  # inherited through FROM, not repeated
    assert "PARAMETER num_predict 3" in saved
    assert "MESSAGE user abc\nMESSAGE assistant def\nMESSAGE user klm\n" in saved
    assert saved.endswith(f"MESSAGE assistant {answer}\n")
    s.close()
