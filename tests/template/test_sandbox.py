"""Untrusted templates cannot reach Python internals: every escape attempt fails loudly."""

from __future__ import annotations

import pytest

from mfc.template import TemplateRenderError, render_prompt

USER = [{"role": "user", "content": "hi"}]

JINJA_ESCAPES = [
    ("str-mro", "{{ ''.__class__.__mro__ }}"),
    ("cycler-globals", "{{ cycler.__init__.__globals__ }}"),
    ("joiner-globals", "{{ joiner.__init__.__globals__.os }}"),
    ("lipsum-globals", "{{ lipsum.__globals__['os'].popen('id').read() }}"),
    ("namespace-init", "{{ namespace.__init__ }}"),
    ("raise-exception-globals", "{{ raise_exception.__globals__ }}"),
    ("self-context", "{{ self._TemplateReference__context }}"),
    ("subclasses", "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}"),
    ("attr-filter", "{{ messages | attr('__class__') }}"),
    ("format-string", "{{ '{0.__class__}'.format(messages) }}"),
    ("mutate-list", "{{ messages.append({'role': 'user', 'content': 'x'}) }}"),
    ("mutate-dict", "{{ messages[0].update({'content': 'x'}) }}"),
    ("giant-string", "{{ 'a' * 100000000 }}"),
    ("giant-power", "{{ 10 ** 100000 }}"),
    ("giant-range", "{% for i in range(10**9) %}{% endfor %}"),
]


@pytest.mark.parametrize(
    "template", [t for _, t in JINJA_ESCAPES], ids=[n for n, _ in JINJA_ESCAPES]
)
def test_jinja_escape_attempts_fail(template: str) -> None:
    with pytest.raises(TemplateRenderError) as err:
        render_prompt(template, messages=USER, origin="chat_template in evil.gguf")
    message = str(err.value)
    assert message.startswith("template error in chat_template in evil.gguf")
    assert "uid=" not in message


def test_unsafe_attribute_error_is_clear() -> None:
    with pytest.raises(TemplateRenderError) as err:
        render_prompt("{{ ''.__class__ }}", messages=USER, origin="Modelfile:3")
    assert "unsafe template" in err.value.message
    assert "`__class__`" in err.value.message
    assert err.value.line == 1


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # Go templates only see data: a dunder is just a missing map key or an unknown struct field
        ("{{ .__class__ }}", "<no value>"),
        ("{{ $.__globals__ }}", "<no value>"),
    ],
)
def test_go_templates_see_only_data(template: str, expected: str) -> None:
    tmpl = "{{ range .Messages }}{{ end }}" + template
    assert render_prompt(tmpl, messages=USER, origin="t") == expected


def test_go_struct_dunder_is_an_error_not_an_escape() -> None:
    with pytest.raises(TemplateRenderError, match="can't evaluate field __class__"):
        render_prompt("{{ range .Messages }}{{ .__class__ }}{{ end }}", messages=USER, origin="t")


def test_go_templates_cannot_call_jinja_globals() -> None:
    problem_text = "{{ cycler }}"
    from mfc.template import check_template

    problem = check_template("{{ .Prompt }}" + problem_text)
    assert problem is not None
    assert "function `cycler` is not defined" in problem.message


def test_hf_conventions_available() -> None:
    out = render_prompt(
        "{{ bos_token }}{% for m in messages %}{{ m['content'] | tojson }}{% endfor %}"
        "{% if add_generation_prompt %}<gen>{% endif %}{{ eos_token }}{{ tools is none }}"
        "{{ strftime_now('%Y') | length }}",
        messages=[{"role": "user", "content": "é<>"}],
        bos_token="<s>",
        eos_token="</s>",
        origin="t",
    )
    assert out == '<s>"é<>"<gen></s>True4'


def test_raise_exception_message_reaches_user() -> None:
    with pytest.raises(TemplateRenderError, match="roles must alternate") as err:
        render_prompt(
            "{% if messages|length > 1 %}{{ raise_exception('roles must alternate') }}{% endif %}",
            messages=[*USER, *USER],
            origin="chat_template in m.gguf",
        )
    assert err.value.origin == "chat_template in m.gguf"


def test_transformers_generation_tag_is_accepted() -> None:
    tmpl = (
        "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}"
        "{% endgeneration %}{% else %}{{ m.content }}{% endif %}|{% endfor %}"
    )
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert render_prompt(tmpl, messages=msgs, origin="t") == "a|b|"


@pytest.mark.parametrize(
    "template",
    [
        "{{ range 1000000000 }}x{{ end }}",
        '{{ printf "%999999999s" "x" }}',
        '{{ printf "%.999999999f" 1.5 }}',
    ],
    ids=["range-int", "printf-width", "printf-precision"],
)
def test_go_templates_cannot_allocate_without_bound(template: str) -> None:
    with pytest.raises(TemplateRenderError, match=r"larger than|more than"):
        render_prompt("{{ range .Messages }}{{ end }}" + template, messages=USER, origin="t")
