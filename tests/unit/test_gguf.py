"""GGUF sources: metadata read without tensors, and corrupt or hostile files rejected quickly."""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

from chatplate import DefaultTemplateWarning, load  # noqa: E402
from chatplate.errors import (  # noqa: E402
    CorruptSourceError,
    MissingDependencyError,
    TemplateNotFoundError,
)
from chatplate.sources.gguf import read_gguf, read_gguf_metadata  # noqa: E402

DEFAULT = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
TOOL_USE = "TOOLS:{{ tools | length }}{% for m in messages %}|{{ m.content }}{% endfor %}"
TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "héllo", "wörld"]
MSGS = [{"role": "user", "content": "Hi"}]

# Each malformed file must be refused well within this many seconds.
# A hang guard, not a speed test: hostile files must fail, never spin (a good parse takes ~0.1 s).
QUICK = 10.0


def build(
    path: Path,
    *,
    chat_template: str | list[dict[str, str]] | None = DEFAULT,
    tokens: list[str] | None = TOKENS,
    bos: int | None = 1,
    eos: int | None = 2,
    endianess: object = None,
    tensor: bool = True,
) -> Path:
    kwargs = {} if endianess is None else {"endianess": endianess}
    writer = gguf.GGUFWriter(str(path), "llama", **kwargs)
    writer.add_name("tiny")
    writer.add_context_length(128)
    if tokens is not None:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * len(tokens))
        writer.add_unk_token_id(0)
        writer.add_pad_token_id(3)
    if bos is not None:
        writer.add_bos_token_id(bos)
    if eos is not None:
        writer.add_eos_token_id(eos)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if tensor:
        writer.add_tensor("token_embd.weight", np.arange(64 * 8, dtype=np.float32).reshape(64, 8))
        writer.add_tensor("output.weight", np.ones((16, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return build(
        tmp_path / "tiny.gguf",
        chat_template=[{"name": "default", "template": DEFAULT}, {"name": "tool_use", "template": TOOL_USE}],
    )


# -- reading -------------------------------------------------------------------------------------


def test_reads_named_templates_and_special_tokens(model):
    found = read_gguf(model)
    assert found.templates == {"default": DEFAULT, "tool_use": TOOL_USE}
    assert (found.bos_token, found.eos_token) == ("<s>", "</s>")
    assert found.special_tokens == {"unk_token": "<unk>", "pad_token": "<pad>"}


def test_load_renders_with_file_tokens(model):
    t = load(model)
    assert t.render(MSGS) == "<s><user>Hi</s>"
    tool = {
        "type": "function",
        "function": {"name": "f", "description": "", "parameters": {"type": "object", "properties": {}}},
    }
    assert t.render(MSGS, tools=[tool]) == "TOOLS:1|Hi"
    assert load(str(model), name="tool_use").templates == {"default": TOOL_USE}
    assert "GGUF" in t.origin


def test_agrees_with_gguf_reader(model):
    reader = gguf.GGUFReader(str(model))
    meta = read_gguf_metadata(model)
    assert meta.templates["default"] == reader.fields["tokenizer.chat_template"].contents()
    assert meta.templates["tool_use"] == reader.fields["tokenizer.chat_template.tool_use"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert meta.tokens[1] == tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    assert meta.tensor_count == len(reader.tensors) == 2
    assert meta.token_count == len(TOKENS)


def test_single_template(tmp_path):
    found = read_gguf(build(tmp_path / "one.gguf", chat_template="X{{ messages | length }}"))
    assert found.templates == {"default": "X{{ messages | length }}"}


def test_non_ascii_tokens_decoded(tmp_path):
    found = read_gguf(build(tmp_path / "t.gguf", bos=4, eos=5))
    assert (found.bos_token, found.eos_token) == ("héllo", "wörld")


def test_big_endian_file(tmp_path):
    path = build(tmp_path / "be.gguf", endianess=gguf.GGUFEndian.BIG)
    assert path.read_bytes()[4:8] == b"\x00\x00\x00\x03"
    found = read_gguf(path)
    assert found.templates == {"default": DEFAULT}
    assert (found.bos_token, found.eos_token) == ("<s>", "</s>")


def test_out_of_range_token_id_is_ignored_like_llama_cpp(tmp_path):
    found = read_gguf(build(tmp_path / "t.gguf", bos=999))
    assert found.bos_token is None
    assert found.eos_token == "</s>"


def test_file_without_extension_detected_by_magic(tmp_path):
    path = build(tmp_path / "model.bin")
    assert load(str(path)).templates == {"default": DEFAULT}


def test_no_template_is_not_found_and_can_fall_back(tmp_path):
    path = build(tmp_path / "base.gguf", chat_template=None)
    with pytest.raises(TemplateNotFoundError) as info:
        load(path)
    assert "tokenizer.chat_template" in str(info.value)
    with pytest.warns(DefaultTemplateWarning):
        t = load(path, fallback="chatml")
    assert t.eos_token == "</s>"  # the file's own token
    assert "<|im_start|>user\nHi<|im_end|>" in t.render(MSGS)


def test_no_tensors_no_tokens(tmp_path):
    found = read_gguf(build(tmp_path / "bare.gguf", tokens=None, bos=None, eos=None, tensor=False))
    assert found.templates == {"default": DEFAULT}
    assert found.bos_token is None and found.special_tokens == {}


def test_missing_gguf_package(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)
    monkeypatch.setitem(sys.modules, "gguf.constants", None)
    with pytest.raises(MissingDependencyError) as info:
        load(model)
    assert info.value.extra == "gguf"
    assert "pip install 'chatplate[gguf]'" in str(info.value)


# -- corrupt files -------------------------------------------------------------------------------


def assert_corrupt_quickly(path: Path) -> CorruptSourceError:
    start = time.perf_counter()
    with pytest.raises(CorruptSourceError) as info:
        load(path)
    assert time.perf_counter() - start < QUICK
    assert info.value.path == str(path)
    return info.value


def test_truncated_at_every_header_offset_and_in_tensor_data(model, tmp_path):
    data = model.read_bytes()
    meta_end = data.index(TOOL_USE.encode()) + len(TOOL_USE)
    offsets = sorted(set(range(0, meta_end + 64)) | set(range(meta_end, len(data), 97)) | {len(data) - 1})
    cut = tmp_path / "cut.gguf"
    start = time.perf_counter()
    for offset in offsets:
        cut.write_bytes(data[:offset])
        with pytest.raises(CorruptSourceError) as info:
            load(cut)
        message = str(info.value)
        assert "not a valid GGUF file" in message, (offset, message)
    assert time.perf_counter() - start < QUICK * 10


def test_truncation_in_tensor_data_says_truncated(model, tmp_path):
    data = model.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 10])
    error = assert_corrupt_quickly(cut)
    assert "truncated" in str(error)


def test_bad_magic(model, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUX" + model.read_bytes()[4:])
    assert "magic" in str(assert_corrupt_quickly(bad))


def test_legacy_ggml_magic(tmp_path):
    old = tmp_path / "old.gguf"
    old.write_bytes(b"ggjt" + b"\0" * 64)
    assert "legacy GGML" in str(assert_corrupt_quickly(old))


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert "too short" in str(assert_corrupt_quickly(empty))


# Hostile headers, written by hand: counts and lengths far beyond the file size must not make
# the reader loop, allocate or read past the end.


def header(kv_count: int, tensor_count: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count)


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_string(key: str, value: str | bytes) -> bytes:
    return gstr(key) + struct.pack("<I", 8) + gstr(value)


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        (header(2**63), "metadata entries"),
        (header(0, tensor_count=2**60), "tensors"),
        (header(1) + struct.pack("<Q", 2**63) + b"\0" * 32, "metadata key"),
        (header(1) + gstr("tokenizer.chat_template") + struct.pack("<I", 8) + struct.pack("<Q", 2**62), "needs"),
        (
            header(1) + gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**60) + b"\0" * 64,
            "strings",
        ),
        (header(1) + gstr("general.x") + struct.pack("<IIQ", 9, 0, 2**62) + b"\0" * 64, "items"),
        (header(1) + gstr("general.x") + struct.pack("<I", 99) + b"\0" * 16, "unknown value type"),
        (header(1) + gstr("general.x") + struct.pack("<IIQ", 9, 9, 2**40) + b"\0" * 64, "arrays"),
        (header(1, version=1), "version 1"),
        (header(1, version=7), "version 7"),
        (header(1) + kv_string("tokenizer.chat_template", b"{{ \xff\xfe }}"), "UTF-8"),
        (header(1) + gstr(b"general.\xff") + struct.pack("<I", 8) + gstr("x"), "UTF-8"),
        (header(2) + kv_string("tokenizer.chat_template", "A") + kv_string("tokenizer.chat_template", "B"), "twice"),
        (header(1) + gstr("tokenizer.chat_template") + struct.pack("<II", 4, 7), "should be a string"),
        (header(1) + gstr("general.alignment") + struct.pack("<II", 4, 3), "power of two"),
        (
            header(1, tensor_count=1)
            + kv_string("tokenizer.chat_template", "A")
            + gstr("w")
            + struct.pack("<I", 9)
            + b"\0" * 64,
            "dimensions",
        ),
        (
            header(1, tensor_count=1)
            + kv_string("tokenizer.chat_template", "A")
            + gstr("w")
            + struct.pack("<IQQIQ", 2, 2**31, 2**31, 0, 0)
            + b"\0" * 32,
            "at least",
        ),
    ],
    ids=[
        "kv-count",
        "tensor-count",
        "key-length",
        "value-length",
        "token-count",
        "scalar-array",
        "value-type",
        "nested-arrays",
        "v1",
        "v7",
        "template-utf8",
        "key-utf8",
        "duplicate-key",
        "template-type",
        "alignment",
        "tensor-dims",
        "tensor-beyond-eof",
    ],
)
def test_hostile_headers_fail_fast(tmp_path, blob, expected):
    path = tmp_path / "hostile.gguf"
    path.write_bytes(blob)
    error = assert_corrupt_quickly(path)
    assert expected in str(error)


def test_valid_hand_written_file_reads(tmp_path):
    # The same builder as the hostile cases, well-formed: proves those fail for the stated reason.
    path = tmp_path / "ok.gguf"
    path.write_bytes(
        header(2) + kv_string("tokenizer.chat_template", "A") + kv_string("tokenizer.chat_template.rag", "B")
    )
    assert read_gguf(path).templates == {"default": "A", "rag": "B"}


def test_large_vocabulary_reads(tmp_path):
    tokens = [f"tok{i}" for i in range(50_000)]
    path = build(tmp_path / "vocab.gguf", tokens=tokens, bos=1, eos=49_999)
    found = read_gguf(path)
    assert (found.bos_token, found.eos_token) == ("tok1", "tok49999")
