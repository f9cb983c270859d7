"""`mfc run`'s Session with images: the counter plus the `vision-proj` fixture (real llama.cpp).

The counter's GGUF chat template renders ``[role]content`` lines and no assistant header, so a
turn whose user message ends with an image is continued from that image's letter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.runtime.engine import EngineError
from mfc.runtime.media import MEDIA_MARKER
from mfc.runtime.model import ChatMessage, image_from_gguf
from mfc.runtime.session import ImageMessage, Session, message_images
from mfc.testing import vision
from mfc.testing.fixtures import expected_continuation

RED = vision.image_png(vision.RED)
BLUE = vision.image_png(vision.BLUE)


def vision_session(models: dict[str, Path], **params: object) -> Session:
    image = image_from_gguf(models["counter-f32.gguf"], params={"temperature": 0.0, **params})  # type: ignore[dict-item]
    image = dataclasses.replace(image, projectors=(models["vision-proj.gguf"],))
    return Session(image, env={})


def test_a_turn_with_an_image(fixture_models: dict[str, Path]) -> None:
    s = vision_session(fixture_models)
    try:
        turn = s.ask("", images=[RED])  # the prompt ends with the image: its letter leads
        assert turn.result() == vision.RED_CONTINUATION
        assert s.loaded is not None and s.loaded.supports_vision
        user = s.history[0]
        assert isinstance(user, ImageMessage)
        assert user.content == MEDIA_MARKER and user.images == (RED,)
        assert s.history[1] == ChatMessage("assistant", vision.RED_CONTINUATION)
        # the image goes before the text (Ollama's [img-N] tag): the text's last letter leads
        assert s.ask("what is thi", images=[BLUE]).result() == expected_continuation("i")
        assert s.history[2].content == MEDIA_MARKER + "what is thi"
    finally:
        s.close()


def test_later_turns_see_earlier_images(fixture_models: dict[str, Path]) -> None:
    s = vision_session(fixture_models)
    try:
        assert s.ask("", images=[BLUE]).result() == vision.BLUE_CONTINUATION
        second = s.ask("klm")  # text only: the engine is given the first turn's image again
        assert second.result() == expected_continuation("klm")
        assert second.stats is not None
        assert message_images(s.history) == [BLUE]
        third = s.ask("and this", images=[RED])
        assert third.result() == expected_continuation("and this")
        assert message_images(s.history) == [BLUE, RED]
        assert s.render(None).count(MEDIA_MARKER) == 2
    finally:
        s.close()


def test_a_typed_marker_is_no_image(fixture_models: dict[str, Path]) -> None:
    s = vision_session(fixture_models)
    try:
        turn = s.ask(f"abc{MEDIA_MARKER}", images=[RED])
        turn.result()
        assert s.history[0].content == MEDIA_MARKER + "abc"
        # text only, with a typed marker: still plain text, no image slot claimed
        assert s.ask(f"x{MEDIA_MARKER}yz").result() == expected_continuation("xyz")
    finally:
        s.close()


def test_image_tokens_count_against_num_ctx(fixture_models: dict[str, Path]) -> None:
    s = vision_session(fixture_models, num_ctx=12)
    try:
        # "<s>[user]ab" is 9 tokens: it fits; the image's 4 embeddings make it 13
        with pytest.raises(DiagnosticError, match=r"the prompt is 13 tokens"):
            s.ask("ab", images=[RED])
        assert s.ask("ab").result().startswith("cd")  # the text alone fits
    finally:
        s.close()


def test_old_turns_with_images_are_dropped_to_fit(fixture_models: dict[str, Path]) -> None:
    s = vision_session(fixture_models, num_ctx=48, num_predict=4)
    try:
        for _ in range(4):
            s.ask("", images=[RED]).result()
        turn = s.ask("", images=[BLUE])
        assert turn.result() == vision.BLUE_CONTINUATION[:4]
        assert any("dropped" in w for w in turn.warnings)
        images = message_images(s.history)
        assert images[-1] == BLUE and len(images) < 5
    finally:
        s.close()


def test_a_model_without_a_projector_fails_the_turn(fixture_models: dict[str, Path]) -> None:
    s = Session(image_from_gguf(fixture_models["counter-f32.gguf"]), env={})
    try:
        with pytest.raises(EngineError, match="does not support images: it has no projector"):
            s.ask("what is this?", images=[RED])
        assert s.history == []
        assert s.ask("abc").result() == expected_continuation("abc")
    finally:
        s.close()


def test_saved_sessions_keep_the_text_of_image_turns(fixture_models: dict[str, Path]) -> None:
    s = vision_session(fixture_models, num_predict=3)
    s.image = dataclasses.replace(s.image, name="counter", digest="sha256:" + "ab" * 32)
    try:
        s.ask("what is this?", images=[RED]).result()
        saved = s.save_modelfile()
        shown = s.modelfile()
    finally:
        s.close()
    assert MEDIA_MARKER not in saved and MEDIA_MARKER not in shown
    assert "MESSAGE user what is this?\nMESSAGE assistant @AB\n" in saved
