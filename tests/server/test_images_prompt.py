"""Where images go in a rendered prompt: `inference.build_prompt` and `inference.raw_prompt`.

Ollama prefixes ``[img-N]`` tags to a message's content (or puts one at the content's first
``[img]``), numbering images across the conversation; mfc puts `media.MEDIA_MARKER` there
and hands the engine the images in the order their markers appear. Text a client typed can
never claim an image slot.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfc.runtime.media import MEDIA_MARKER
from mfc.runtime.model import ChatMessage, ModelImage
from mfc.server.inference import Conversation, Prompt, PromptError, build_prompt, raw_prompt

M = MEDIA_MARKER
GO = "{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}"
A, B, C = b"image-a", b"image-b", b"image-c"


def image(template: str | None = GO, **fields: object) -> ModelImage:
    return ModelImage(
        "m",
        Path("m.gguf"),
        template=template,
        projectors=(Path("p.gguf"),),
        **fields,  # type: ignore[arg-type]
    )


def test_images_prefix_their_message_in_conversation_order() -> None:
    conv = Conversation(
        [
            {"role": "user", "content": "look", "images": [A]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "and these", "images": [B, C]},
        ]
    )
    got = build_prompt(image(), conv)
    assert got == Prompt(f"<user>{M}look<assistant>ok<user>{M}{M}and these", (A, B, C))


def test_img_placeholder_takes_the_image_where_the_user_put_it() -> None:
    """Ollama's imageTaggedMessages: the first ``[img]`` of the content is the image's place;
    images beyond the ``[img]`` placeholders are prefixed."""
    conv = Conversation([{"role": "user", "content": "a [img] b [img] c", "images": [A, B, C]}])
    got = build_prompt(image(), conv)
    assert got.text == f"<user>{M}a {M} b {M} c"
    assert got.images == (C, A, B)  # C was prefixed: it comes first in the prompt


def test_typed_markers_are_not_image_slots() -> None:
    conv = Conversation(
        [
            {"role": "system", "content": f"sys {M}"},
            {"role": "user", "content": f"{M}{M} hi", "images": [A]},
            {"role": "assistant", "content": f"text only {M}"},
        ]
    )
    got = build_prompt(image(), conv)
    assert got == Prompt(f"<system>sys <user>{M} hi<assistant>text only ", (A,))


def test_markers_in_the_models_own_layers_are_removed() -> None:
    model = image(
        template=GO + M,
        system=f"be {M} brief",
        messages=(ChatMessage("assistant", f"{M}earlier"),),
    )
    got = build_prompt(model, Conversation([{"role": "user", "content": "x", "images": [A]}]))
    assert got == Prompt(f"<system>be  brief<assistant>earlier<user>{M}x", (A,))


def test_a_message_the_template_drops_takes_its_images_with_it() -> None:
    """A template that renders only the last message: the earlier image is not sent, so the
    engine always gets as many images as markers."""
    last_only = '{{ $last := "" }}{{ range .Messages }}{{ $last = .Content }}{{ end }}{{ $last }}'
    conv = Conversation(
        [
            {"role": "user", "content": "first", "images": [A]},
            {"role": "assistant", "content": "second", "images": [B]},
        ]
    )
    assert build_prompt(image(last_only), conv) == Prompt(f"{M}second", (B,))


def test_jinja_template_and_no_template() -> None:
    jinja = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    conv = Conversation([{"role": "user", "content": "hi", "images": [A]}])
    assert build_prompt(image(jinja), conv) == Prompt(f"[user]{M}hi", (A,))


def test_insert_mode_puts_the_image_before_the_prompt() -> None:
    insert = "{{ if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{ end }}"
    conv = Conversation(
        [{"role": "user", "content": "def f(", "images": [A]}],
        image_messages=False,
        extra={"suffix": "):"},
    )
    assert build_prompt(image(insert), conv) == Prompt(f"<PRE>{M}def f(<SUF>):<MID>", (A,))


def test_tools_path_keeps_images() -> None:
    """Requests with tools or think render through the full template context; the image
    slots are the same."""
    conv = Conversation(
        [{"role": "user", "content": "hi", "images": [A]}],
        tools=[{"type": "function", "function": {"name": "f"}}],
    )
    assert build_prompt(image(), conv) == Prompt(f"<user>{M}hi", (A,))


def test_text_only_prompt_has_no_images() -> None:
    got = build_prompt(image(), Conversation([{"role": "user", "content": f"a{M}b"}]))
    assert got == Prompt("<user>ab")


def test_debug_text_shows_ollamas_tags() -> None:
    assert Prompt(f"x{M}y{M}", (A, B)).debug_text() == "x[img-0]y[img-1]"
    assert Prompt("plain").debug_text() == "plain"


# -- raw mode --------------------------------------------------------------------------------------


def test_raw_prompt_places_images_at_their_tags() -> None:
    got = raw_prompt("b:[img-1] a:[img-0] again:[img-0] none:[img-7]", [A, B])
    assert got == Prompt(f"b:{M} a:{M} again:[img-0] none:[img-7]", (B, A))


def test_raw_prompt_without_images_only_loses_typed_markers() -> None:
    assert raw_prompt(f"[img-0] {M}x") == Prompt("[img-0] x")


def test_raw_prompt_needs_a_tag_per_image() -> None:
    with pytest.raises(PromptError, match=r'images\[1\]: .*"\[img-1\]"'):
        raw_prompt("[img-0] only one", [A, B])


# -- property: markers and images always agree -----------------------------------------------------

pieces = st.lists(
    st.sampled_from(["a", " ", M, "[img]", "[img-0]", "[img-1]", "<", "\n", "{{", "é"]),
    max_size=8,
).map("".join)
messages = st.lists(
    st.tuples(st.sampled_from(["user", "assistant", "system"]), pieces, st.integers(0, 3)),
    max_size=5,
)


@given(messages)
def test_the_prompt_has_one_marker_per_image_sent(msgs: list[tuple[str, str, int]]) -> None:
    conv = Conversation(
        [
            {"role": role, "content": text, "images": [bytes([i, n]) for n in range(count)]}
            for i, (role, text, count) in enumerate(msgs)
        ]
    )
    got = build_prompt(image(), conv)
    assert got.text.count(M) == len(got.images)
    sent = sorted(bytes([i, n]) for i, (_, _, count) in enumerate(msgs) for n in range(count))
    if all(role != "system" for role, _, _ in msgs):
        assert sorted(got.images) == sent  # each message is rendered once: each image sent once
    else:  # a system message may be rendered again at the top (Ollama's collation)
        assert set(got.images) == set(sent)


@given(pieces, st.integers(0, 3))
def test_raw_prompt_markers_match_images(text: str, count: int) -> None:
    images = [bytes([n]) for n in range(count)]
    try:
        got = raw_prompt(text, images)
    except PromptError:
        assert any(f"[img-{n}]" not in text for n in range(count))
        return
    assert got.text.count(M) == len(got.images) == count
