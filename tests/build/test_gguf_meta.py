"""mfc.gguf_meta on the project's fixture models and on broken and split files."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from build_helpers import write_split

from mfc.gguf_meta import (
    GGUFFormatError,
    GGUFInfo,
    file_type_name,
    inspect,
    merge_split,
    parameter_count_label,
    split_set,
)
from mfc.testing import counter


@pytest.mark.parametrize(
    ("name", "file_type"),
    [("counter-f32.gguf", "F32"), ("counter-f16.gguf", "F16"), ("counter-q8_0.gguf", "Q8_0")],
)
def test_counter_models(fixture_models: dict[str, Path], name: str, file_type: str) -> None:
    info = inspect(fixture_models[name])
    assert info.architecture == "llama"
    assert info.general_type == "model"
    assert not info.is_adapter
    assert info.file_type == file_type
    assert info.context_length == counter.CONTEXT_LENGTH
    assert info.embedding_length == counter.N_EMBD
    assert info.chat_template == counter.CHAT_TEMPLATE
    assert info.name == name.removesuffix(".gguf")
    assert (info.bos_token, info.eos_token) == (
        counter.vocab().tokens[counter.BOS],
        counter.vocab().tokens[counter.EOS],
    )
    assert info.parameter_count == sum(t_size(t.shape) for t in info.tensors)
    assert "output.weight" in info.tensor_map()


def t_size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def test_adapters_are_recognised(fixture_models: dict[str, Path]) -> None:
    shift = inspect(fixture_models["lora-shift.gguf"])
    assert (shift.general_type, shift.adapter_type, shift.architecture) == (
        "adapter",
        "lora",
        "llama",
    )
    assert shift.is_adapter
    assert {t.name for t in shift.tensors} == {"output.weight.lora_a", "output.weight.lora_b"}
    assert inspect(fixture_models["lora-other-arch.gguf"]).architecture == "qwen2"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("not-gguf.gguf", "not a GGUF file (it starts with b'<!do'"),
        ("truncated.gguf", "the file is truncated"),
    ],
)
def test_broken_files_say_why(fixture_models: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(GGUFFormatError) as exc:
        inspect(fixture_models[name])
    assert exc.value.reason.startswith(reason)
    assert exc.value.path == fixture_models[name]


def test_empty_and_header_only_files(tmp_path: Path, fixture_models: dict[str, Path]) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFFormatError, match="empty"):
        inspect(empty)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(fixture_models["counter-f32.gguf"].read_bytes()[:200])
    with pytest.raises(GGUFFormatError, match="truncated"):
        inspect(cut)


def test_json_round_trip(fixture_models: dict[str, Path]) -> None:
    info = inspect(fixture_models["counter-q8_0.gguf"])
    assert GGUFInfo.from_json(info.to_json()) == info
    old = {k: v for k, v in info.to_json().items() if k not in ("name", "bos_token")}
    with pytest.raises(KeyError):  # a record cached by an older mfc is a cache miss
        GGUFInfo.from_json(old)


@pytest.mark.parametrize(
    ("count", "label"),
    [
        (8_030_261_248, "8.0B"),
        (7_000_000_000, "7B"),
        (1_235_814_400, "1.2B"),
        (135_000_000, "135M"),
        (494_032_768, "494.03M"),
        (168_832, "169K"),
        (999, "999"),
    ],
)
def test_parameter_count_label(count: int, label: str) -> None:
    assert parameter_count_label(count) == label


def test_file_type_names() -> None:
    assert file_type_name(0) == "F32"
    assert file_type_name(15) == "Q4_K_M"
    assert file_type_name(32) == "BF16"
    assert file_type_name(9999) == "unknown(9999)"


def test_split_sets(tmp_path: Path) -> None:
    shards = write_split(tmp_path / "split")
    assert [p.name for p in shards] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert split_set(shards[0]) == shards
    assert split_set(tmp_path / "plain.gguf") is None
    merged = merge_split([inspect(p) for p in shards])
    assert merged.architecture == "llama"
    assert merged.split_count == 3
    assert merged.parameter_count == 80 + 64 + 80
    assert [t.name for t in merged.tensors] == [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "output.weight",
    ]
    shards[1].unlink()
    with pytest.raises(GGUFFormatError, match=r"m-00002-of-00003\.gguf of the 3-file split set"):
        split_set(shards[0])


def _vocab_gguf(path: Path, n_tokens: int) -> None:
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_token_list([f"tok{i}" for i in range(n_tokens)])
    w.add_token_scores([float(i) for i in range(n_tokens)])
    w.add_token_merges([f"a{i} b{i}" for i in range(n_tokens)])
    w.add_chat_template("{{ messages }}")
    w.add_name("vocab")
    w.add_bos_token_id(n_tokens - 1)  # the last token: reading it steps over all the others
    w.add_eos_token_id(7)
    w.add_tensor("token_embd.weight", np.zeros((n_tokens, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_fast_reader_agrees_with_gguf_reader(
    tmp_path: Path, fixture_models: dict[str, Path]
) -> None:
    """The bulk-array reader reads every field the builder uses exactly as GGUFReader does."""
    from mfc.gguf_meta import _reader_class

    _vocab_gguf(tmp_path / "vocab.gguf", 300)
    paths = [
        tmp_path / "vocab.gguf",
        *(fixture_models[n] for n in ("counter-q8_0.gguf", "lora-shift.gguf")),
    ]
    for path in paths:
        plain, fast = gguf.GGUFReader(path), _reader_class()(path)
        assert list(plain.fields) == list(fast.fields)
        assert plain.data_offset == fast.data_offset
        for key, field in plain.fields.items():
            string_array = field.types[:1] == [gguf.GGUFValueType.ARRAY] and field.types[-1] == (
                gguf.GGUFValueType.STRING
            )
            if not string_array:
                assert fast.fields[key].contents() == field.contents(), key
        assert [(t.name, t.shape.tolist(), t.data_offset) for t in plain.tensors] == [
            (t.name, t.shape.tolist(), t.data_offset) for t in fast.tensors
        ]
        tokens = plain.fields.get("tokenizer.ggml.tokens")
        for which in ("bos", "eos"):
            id_field = plain.fields.get(f"tokenizer.ggml.{which}_token_id")
            want = tokens.contents(id_field.contents()) if tokens and id_field else ""
            assert getattr(inspect(path), f"{which}_token") == want
    info = inspect(tmp_path / "vocab.gguf")
    assert (info.chat_template, info.context_length) == ("{{ messages }}", 64)
    assert (info.name, info.bos_token, info.eos_token) == ("vocab", "tok299", "tok7")


def test_bos_outside_the_vocabulary_has_no_text(tmp_path: Path) -> None:
    w = gguf.GGUFWriter(tmp_path / "m.gguf", "llama")
    w.add_token_list(["a", "b"])
    w.add_bos_token_id(2)
    w.add_tensor("token_embd.weight", np.zeros((2, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    info = inspect(tmp_path / "m.gguf")
    assert (info.bos_token, info.eos_token) == ("", "")


def test_truncated_inside_an_array(tmp_path: Path) -> None:
    _vocab_gguf(tmp_path / "vocab.gguf", 300)
    data = (tmp_path / "vocab.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:1500])
    with pytest.raises(GGUFFormatError, match="damaged or truncated"):
        inspect(tmp_path / "cut.gguf")
