"""Chat templates from GGUF files (llama.cpp's model format), read from the metadata alone.

A GGUF file is a header, a key/value metadata section, tensor descriptions, then gigabytes of
tensor data. The template lives in the metadata: ``tokenizer.chat_template`` (the default) and
``tokenizer.chat_template.NAME`` (named ones); the special tokens are ids
(``tokenizer.ggml.bos_token_id``...) into the ``tokenizer.ggml.tokens`` list.

``gguf.GGUFReader`` is not used to parse: it builds a numpy view per array element (seconds on a
150k-token vocabulary), maps every tensor, and on a truncated or hostile file it can loop on a
huge array count or return short reads as data. This module walks only the metadata with bounds
checks against the file size, decodes only the strings it needs (strictly as UTF-8), and checks
that the tensor data the header promises is actually in the file, so a cut-short download is
reported instead of half-read. The ``gguf`` package (the ``[gguf]`` extra) supplies the format's
constants: value types and the tensor type sizes.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Any

from ..errors import CorruptSourceError, MissingDependencyError
from . import Found

__all__ = ["read_gguf", "read_gguf_metadata", "GGUFMetadata"]

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp rejects tensors with more
_MAX_NESTING = 8  # arrays of arrays: real files nest at most twice

# Value types (gguf.GGUFValueType) and their sizes; STRING=8 and ARRAY=9 have variable size.
_STRING, _ARRAY = 8, 9
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_INTEGER_TYPES = {0, 1, 2, 3, 4, 5, 10, 11}

_TEMPLATE_KEY = "tokenizer.chat_template"
_TOKENS_KEY = "tokenizer.ggml.tokens"
# The special tokens transformers maps from GGUF metadata (integrations/ggml.py).
_TOKEN_ID_KEYS = {
    "tokenizer.ggml.bos_token_id": "bos_token",
    "tokenizer.ggml.eos_token_id": "eos_token",
    "tokenizer.ggml.unknown_token_id": "unk_token",
    "tokenizer.ggml.padding_token_id": "pad_token",
}


class GGUFMetadata:
    """The parts of a GGUF header chatplate needs.

    ``templates``: name -> template (``default`` for ``tokenizer.chat_template``);
    ``token_ids``: ``bos_token`` etc. -> id; ``tokens``: id -> token text for those ids only;
    ``version``, ``tensor_count``, ``kv_count``.
    """

    def __init__(self) -> None:
        self.version = 0
        self.tensor_count = 0
        self.kv_count = 0
        self.templates: dict[str, str] = {}
        self.token_ids: dict[str, int] = {}
        self.tokens: dict[int, str] = {}
        self.token_count: int | None = None


def read_gguf(path: str | os.PathLike[str]) -> Found:
    """Read the chat templates and special tokens of a GGUF file.

    found = read_gguf("model-Q4_K_M.gguf")
    found.templates["default"][:20], found.bos_token
    ('{%- for message in m', '<|begin_of_text|>')
    """
    path = Path(path)
    meta = read_gguf_metadata(path)
    named = {name: meta.tokens[token_id] for name, token_id in meta.token_ids.items() if token_id in meta.tokens}
    bos = named.pop("bos_token", None)
    eos = named.pop("eos_token", None)
    return Found(
        templates=dict(meta.templates),
        origin=f"GGUF file {path}",
        bos_token=bos,
        eos_token=eos,
        special_tokens=named,
        source=str(path),
        looked_for=[f"{path} (metadata key '{_TEMPLATE_KEY}' and '{_TEMPLATE_KEY}.NAME')"],
        hint=None if meta.templates else "The converter that made this file did not embed the model's template.",
    )


def read_gguf_metadata(path: str | os.PathLike[str]) -> GGUFMetadata:
    """Parse the header of a GGUF file (never the tensor data), validating it as it goes.

    Raises :class:`~chatplate.errors.CorruptSourceError` for anything that is not a complete,
    well-formed GGUF v2/v3 file, and :class:`~chatplate.errors.MissingDependencyError` without
    the ``gguf`` package.

    meta = read_gguf_metadata("model.gguf")
    sorted(meta.templates)
    ['default', 'tool_use']
    """
    path = Path(path)
    quant_sizes = _quant_sizes()
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise CorruptSourceError(
            f"{path} cannot be read: {exc.strerror or exc}", source=str(path), path=str(path)
        ) from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 4:
            raise _corrupt(path, f"the file is {size} bytes long, too short to be GGUF")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return _Parser(buffer, size, path, quant_sizes).parse()


def _quant_sizes() -> dict[int, tuple[int, int]]:
    try:
        from gguf.constants import GGML_QUANT_SIZES
    except ImportError as exc:
        raise MissingDependencyError(
            "reading GGUF files needs the 'gguf' package: pip install 'chatplate[gguf]'",
            extra="gguf",
            package="gguf",
        ) from exc
    return {int(kind): (int(block), int(nbytes)) for kind, (block, nbytes) in GGML_QUANT_SIZES.items()}


def _corrupt(path: Path, problem: str) -> CorruptSourceError:
    return CorruptSourceError(f"{path} is not a valid GGUF file: {problem}.", source=str(path), path=str(path))


class _Parser:
    def __init__(self, buffer: mmap.mmap, size: int, path: Path, quant_sizes: dict[int, tuple[int, int]]) -> None:
        self.buf = buffer
        self.size = size
        self.path = path
        self.pos = 0
        self.order = "<"
        self.quant_sizes = quant_sizes

    # -- primitives --

    def fail(self, problem: str) -> CorruptSourceError:
        return _corrupt(self.path, problem)

    def need(self, count: int, what: str) -> None:
        if count > self.size - self.pos:
            raise self.fail(
                f"{what} at offset {self.pos} needs {count} bytes but the file ends after {self.size - self.pos} "
                "(truncated? an interrupted download leaves a file like this)"
            )

    def scalar(self, fmt: str, what: str) -> Any:
        width = struct.calcsize(fmt)
        self.need(width, what)
        (value,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += width
        return value

    def u32(self, what: str) -> int:
        return int(self.scalar("I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("Q", what))

    def raw_string(self, what: str) -> bytes:
        length = self.u64(f"length of {what}")
        self.need(length, what)
        data = self.buf[self.pos : self.pos + length]
        self.pos += length
        return data

    def text(self, what: str) -> str:
        start = self.pos
        data = self.raw_string(what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} at offset {start} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None

    def skip_string(self, what: str) -> None:
        length = self.u64(f"length of {what}")
        self.need(length, what)
        self.pos += length

    # -- structure --

    def parse(self) -> GGUFMetadata:
        meta = GGUFMetadata()
        magic = bytes(self.buf[0:4])
        if magic != _MAGIC:
            if magic in (b"ggjt", b"ggml", b"ggmf", b"tjgg", b"lmgg", b"fmgg"):
                raise self.fail("it is in the legacy GGML format; convert it to GGUF with llama.cpp's scripts")
            raise self.fail(f"it does not start with the GGUF magic bytes (found {magic!r})")
        self.pos = 4
        version = self.u32("version")
        if version & 0xFFFF == 0 and version != 0:
            # Written on a big-endian machine: every number in the file is byte-swapped.
            self.order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in _SUPPORTED_VERSIONS:
            raise self.fail(f"version {version} is not supported (GGUF versions 2 and 3 are)")
        meta.version = version
        meta.tensor_count = self.u64("tensor count")
        meta.kv_count = self.u64("metadata count")
        # Cheap sanity bounds before any loop: every entry takes at least this many bytes.
        if meta.kv_count * 13 > self.size - self.pos:
            raise self.fail(f"it claims {meta.kv_count} metadata entries, more than the file can hold")
        if meta.tensor_count * 24 > self.size - self.pos:
            raise self.fail(f"it claims {meta.tensor_count} tensors, more than the file can hold")

        alignment = _DEFAULT_ALIGNMENT
        tokens_at: tuple[int, int] | None = None
        seen: set[str] = set()
        for index in range(meta.kv_count):
            key_at = self.pos
            key = self.text(f"metadata key #{index}")
            if key in seen:
                raise self.fail(f"metadata key {key!r} appears twice (second at offset {key_at})")
            seen.add(key)
            kind = self.u32(f"type of {key!r}")
            if key == _TEMPLATE_KEY or key.startswith(_TEMPLATE_KEY + "."):
                if kind != _STRING:
                    raise self.fail(f"{key!r} should be a string but has value type {kind}")
                name = "default" if key == _TEMPLATE_KEY else key[len(_TEMPLATE_KEY) + 1 :]
                text = self.text(repr(key))
                if name:  # "tokenizer.chat_template." names nothing; llama.cpp would never find it
                    meta.templates[name] = text
            elif key in _TOKEN_ID_KEYS and kind in _INTEGER_TYPES:
                meta.token_ids[_TOKEN_ID_KEYS[key]] = int(self.scalar(_SCALAR_FORMATS[kind], repr(key)))
            elif key == "general.alignment":
                if kind != 4:
                    raise self.fail(f"'general.alignment' should be a uint32 but has value type {kind}")
                alignment = self.u32("general.alignment")
                if alignment == 0 or alignment & (alignment - 1):
                    raise self.fail(f"alignment {alignment} is not a power of two")
            elif key == _TOKENS_KEY and kind == _ARRAY:
                item_kind = self.u32(f"item type of {key!r}")
                count = self.u64(f"length of {key!r}")
                if item_kind != _STRING:
                    raise self.fail(f"{key!r} should be an array of strings but holds value type {item_kind}")
                tokens_at = (self.pos, count)
                meta.token_count = count
                self.skip_array(item_kind, count, key, 1)
            else:
                self.skip_value(kind, key, 0)

        self.check_tensors(meta.tensor_count, alignment)
        if tokens_at is not None and meta.token_ids:
            self.pick_tokens(meta, *tokens_at)
        return meta

    def skip_value(self, kind: int, key: str, depth: int) -> None:
        if kind == _STRING:
            self.skip_string(f"value of {key!r}")
        elif kind == _ARRAY:
            item_kind = self.u32(f"item type of {key!r}")
            count = self.u64(f"length of {key!r}")
            self.skip_array(item_kind, count, key, depth + 1)
        elif kind in _SCALAR_FORMATS:
            width = struct.calcsize(_SCALAR_FORMATS[kind])
            self.need(width, f"value of {key!r}")
            self.pos += width
        else:
            raise self.fail(f"{key!r} has unknown value type {kind}")

    def skip_array(self, item_kind: int, count: int, key: str, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise self.fail(f"{key!r} nests arrays more than {_MAX_NESTING} deep")
        if item_kind in _SCALAR_FORMATS:
            self.need(count * struct.calcsize(_SCALAR_FORMATS[item_kind]), f"{count} items of {key!r}")
            self.pos += count * struct.calcsize(_SCALAR_FORMATS[item_kind])
        elif item_kind == _STRING:
            # Each string is at least its 8-byte length: refuse impossible counts before looping.
            self.need(count * 8, f"{count} strings of {key!r}")
            unpack = struct.Struct(self.order + "Q").unpack_from
            buf, pos, end = self.buf, self.pos, self.size
            for _ in range(count):
                if pos + 8 > end:
                    self.pos = pos
                    self.need(8, f"a string length in {key!r}")
                pos += 8 + unpack(buf, pos)[0]
                if pos > end:
                    self.pos = end
                    raise self.fail(f"a string in {key!r} runs past the end of the file (truncated?)")
            self.pos = pos
        elif item_kind == _ARRAY:
            self.need(count * 12, f"{count} arrays of {key!r}")
            for _ in range(count):
                self.skip_value(_ARRAY, key, depth)
        else:
            raise self.fail(f"{key!r} is an array of unknown value type {item_kind}")

    def check_tensors(self, count: int, alignment: int) -> None:
        extents: list[tuple[str, int, int]] = []
        for index in range(count):
            name = self.text(f"name of tensor #{index}")
            n_dims = self.u32(f"dimension count of tensor {name!r}")
            if n_dims > _MAX_DIMS:
                raise self.fail(f"tensor {name!r} has {n_dims} dimensions (at most {_MAX_DIMS} are allowed)")
            elements = 1
            for _ in range(n_dims):
                elements *= self.u64(f"a dimension of tensor {name!r}")
            kind = self.u32(f"type of tensor {name!r}")
            offset = self.u64(f"data offset of tensor {name!r}")
            block, type_size = self.quant_sizes.get(kind, (0, 0))
            # Tensor types newer than the installed gguf package cannot be sized: check the start only.
            nbytes = elements * type_size // block if block else 0
            extents.append((name, offset, nbytes))
        if not count:
            return
        data_start = self.pos + (-self.pos % alignment)
        for name, offset, nbytes in extents:
            end = data_start + offset + nbytes
            if end > self.size:
                raise self.fail(
                    f"tensor {name!r} needs the file to be at least {end} bytes long but it is {self.size} "
                    "(truncated? an interrupted download leaves a file like this)"
                )

    def pick_tokens(self, meta: GGUFMetadata, start: int, count: int) -> None:
        wanted = {token_id for token_id in meta.token_ids.values() if 0 <= token_id < count}
        if not wanted:
            return
        # The whole array was already walked with bounds checks, so plain reads are safe here.
        unpack = struct.Struct(self.order + "Q").unpack_from
        pos, last = start, max(wanted)
        for token_id in range(last + 1):
            length = unpack(self.buf, pos)[0]
            if token_id in wanted:
                data = self.buf[pos + 8 : pos + 8 + length]
                try:
                    meta.tokens[token_id] = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail(f"token {token_id} of {_TOKENS_KEY!r} is not valid UTF-8") from None
            pos += 8 + length
