"""The two tokenizer engines give the same ids, offsets, masks and labels.

``fastokens`` runs where the load-time check finds it exact (byte-level BPE, and SentencePiece
BPE with a first-only Metaspace); everything it
produces is compared here with ``tokenizers`` on the same tokenizer, over the corpus
conversations, generated conversations and text built to break offsets (multi-byte characters,
text that is not NFC, control tokens in data).
"""

from __future__ import annotations

import functools
import json
import threading
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatplate
from chatplate.tokens import ChatTokenizer
from tests import tokenizer_fixtures
from tests.conftest import corpus_conversations
from tests.strategies import conversations

pytest.importorskip("fastokens")

ENGINES = ["llama3_bpe", "chatml_bpe", "mistral_v1"]

HARD = [
    [{"role": "user", "content": "emoji 😀👍🏽👨‍👩‍👧 🇫🇷, CJK 東京 and a combining e\u0301 (not NFC)"},
     {"role": "assistant", "content": "Ünïcødé ✓ — “fine” …\n\n  indented\tand tabbed  "}],
    [{"role": "user", "content": "forged <|im_end|><|eot_id|> tokens and half <|im_"},
     {"role": "assistant", "content": "end|> and <tool_call>{\"a\": 1}</tool_call>"}],
    [{"role": "system", "content": " "}, {"role": "user", "content": "\r\n\r\n"}, {"role": "assistant", "content": "1 12 123 1234"}],
]


@functools.cache
def engines(name: str) -> tuple[chatplate.ChatTemplate, chatplate.ChatTemplate]:
    directory = tokenizer_fixtures.all_model_dirs()[name]
    fast, slow = ChatTokenizer.from_model_dir(directory), ChatTokenizer.from_model_dir(directory)
    fast.engine_choice, slow.engine_choice = "fastokens", "tokenizers"
    template = chatplate.load(str(directory))
    return (chatplate.load(template, tokenizer=fast), chatplate.load(template, tokenizer=slow))


def outcome(call: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = call()
    except chatplate.ChatplateError as exc:
        return type(exc).__name__
    return [(e.input_ids, e.offsets, e.assistant_mask, e.labels, e.text) for e in batch.encodings]


@pytest.mark.parametrize("name", ENGINES)
def test_fastokens_is_used_and_exact(name: str) -> None:
    fast, slow = engines(name)
    assert (fast.tokenizer.engine, slow.tokenizer.engine) == ("fastokens", "tokenizers")
    chats = [*HARD, *corpus_conversations()]
    for options in ({}, {"add_generation_prompt": True}, {"sanitize_control_tokens": False}):
        for masks in (False, True):
            if masks and options.get("add_generation_prompt"):
                continue
            ours, theirs = (
                outcome(lambda t=t: t.encode_batch(chats, return_offsets=True, return_assistant_mask=masks, **options))
                for t in (fast, slow)
            )
            assert ours == theirs, options


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_truncated_and_deduplicated_rows_keep_labels_in_step_with_ids(name: str, side: str) -> None:
    """The fast path makes labels with the ids, before truncation and the double-BOS fix cut
    them: they must be cut alike (each label the id where trained, -100 elsewhere)."""
    fast, slow = engines(name)
    chats = [*HARD, *corpus_conversations()[:40]]
    bos = fast.tokenizer.backend.id_to_token(fast.tokenizer.bos_id) if fast.tokenizer.bos_id is not None else None
    if bos is not None:
        # A template that writes BOS twice: the encoder drops the first.
        fast, slow = (
            chatplate.load(chatplate.ChatTemplate("{{ bos_token }}" + t.source, bos_token=bos, eos_token=t.eos_token),
                           tokenizer=t.tokenizer)
            for t in (fast, slow)
        )
    chats = [chat for chat in chats if isinstance(outcome(lambda chat=chat: slow.encode_batch([chat], return_assistant_mask=True)), list)]
    for template in (fast, slow):
        template.tokenizer.truncation_side = side
    try:
        ours, theirs = (
            outcome(lambda t=t: t.encode_batch(chats, return_assistant_mask=True, truncation=True, max_length=24))
            for t in (fast, slow)
        )
    finally:
        for template in (fast, slow):
            template.tokenizer.truncation_side = "right"
    assert fast.tokenizer.engine == "fastokens"
    assert ours == theirs
    assert isinstance(ours, list) and any(sum(mask) for _, _, mask, _, _ in ours)
    if bos is not None:
        assert all(enc.removed_duplicate_bos for enc in fast.encode_batch(chats).encodings)
    for ids, _, mask, labels, _ in ours:
        assert len(ids) <= 24
        assert labels == [token if trained else -100 for token, trained in zip(ids, mask)]


@pytest.mark.parametrize("name", ENGINES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(messages=conversations())
def test_generated_conversations_encode_the_same_with_both_engines(name: str, messages: list) -> None:
    fast, slow = engines(name)
    for masks in (False, True):
        ours = outcome(lambda: fast.encode_batch([messages], return_offsets=True, return_assistant_mask=masks))
        theirs = outcome(lambda: slow.encode_batch([messages], return_offsets=True, return_assistant_mask=masks))
        assert ours == theirs


def test_a_pipeline_the_fast_path_cannot_reproduce_stays_on_tokenizers(tmp_path: Any) -> None:
    import shutil

    directory = tmp_path / "model"
    shutil.copytree(tokenizer_fixtures.llama3_bpe_dir(), directory)
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"] = {"type": "Lowercase"}  # changes the text, so offsets cannot be rebuilt
    (directory / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    quiet = ChatTokenizer.from_model_dir(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto: quietly
        assert quiet.fast is None
    tokenizer = ChatTokenizer.from_model_dir(directory)
    tokenizer.engine_choice = "fastokens"
    with pytest.warns(chatplate.TokenizerBackendWarning, match="normalizer"):
        assert tokenizer.engine == "tokenizers"


def test_auto_switches_to_fastokens_once_enough_text_was_encoded() -> None:
    tokenizer = ChatTokenizer.from_model_dir(tokenizer_fixtures.llama3_bpe_dir())
    tokenizer.FAST_AFTER_CHARS = 5_000
    template = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir()), tokenizer=tokenizer)
    reference = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir()))
    reference.tokenizer.engine_choice = "tokenizers"
    chat = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    first = template.encode(chat, return_offsets=True)
    assert tokenizer.engine == "tokenizers"  # a single small call does not pay for loading fastokens
    batch = template.encode_batch([chat] * 10, return_offsets=True, return_assistant_mask=True)
    assert tokenizer.engine == "fastokens"
    expected = reference.encode_batch([chat] * 10, return_offsets=True, return_assistant_mask=True)
    assert [e.input_ids for e in batch.encodings] == [e.input_ids for e in expected.encodings] == [first.input_ids] * 10
    assert [(e.offsets, e.labels) for e in batch.encodings] == [(e.offsets, e.labels) for e in expected.encodings]


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("output", ["rows.parquet", "rows.jsonl"])
def test_prepare_writes_the_same_rows_with_both_engines(tmp_path: Any, name: str, output: str) -> None:
    """prepare keeps the fast engine's ids and masks as arrays on their way to Arrow; rows that
    carry marked control tokens (encoded piece by piece, as lists) sit beside them."""
    pq = pytest.importorskip("pyarrow.parquet")
    fast, slow = engines(name)
    chats = [*HARD, *corpus_conversations()]
    bos = fast.tokenizer.backend.id_to_token(fast.tokenizer.bos_id) if fast.tokenizer.bos_id is not None else None
    if bos is not None:
        chats.append([{"role": "user", "content": bos + "a prompt that starts with the BOS token"},
                      {"role": "assistant", "content": "fine"}])
    chats.append([{"role": "user", "content": "no assistant turn: rejected"}])
    source = tmp_path / "chats.jsonl"
    source.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in chats), encoding="utf-8")
    written = []
    for template, engine in ((fast, "fast"), (slow, "slow")):
        for truncation in ("drop", "tokens"):
            target = tmp_path / engine / truncation / output
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                summary = chatplate.prepare(source, target, template, workers=1, max_length=300, truncation=truncation)
            rows = (
                pq.read_table(target).to_pylist() if output.endswith(".parquet")
                else [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
            )
            assert summary.rows_written == len(rows) > 0
            written.append((truncation, rows, dict(summary.rejected)))
    assert fast.tokenizer.engine == "fastokens"
    assert written[:2] == written[2:]
    # The rows kept under "drop" are what encode gives for the chats that fit and train something.
    expected = []
    for chat in chats:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                enc = slow.encode(chat, return_assistant_mask=True)
        except chatplate.ChatplateError:
            continue
        if len(enc.input_ids) <= 300 and sum(enc.assistant_mask):
            expected.append(enc)
    drop_rows = written[0][1]
    assert [(row["input_ids"], row["labels"]) for row in drop_rows] == [(e.input_ids, e.labels) for e in expected]


@pytest.mark.parametrize("name", ENGINES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_masks_read_in_bytes_equal_masks_read_from_tokenizers_offsets(name: str, data: st.DataObject) -> None:
    """The fast path reads masks against byte offsets; tokenizers' character offsets, read by
    the one overlap rule, must give the same masks (multi-byte characters split across tokens,
    SentencePiece's leading ▁, spans at the very start and end), for each text of a batch
    (whose offsets run on from text to text, empty texts included)."""
    from chatplate.tokens.spans import token_mask

    fast, _ = engines(name)
    encoder = fast.tokenizer.fast
    assert encoder is not None
    pieces = st.sampled_from([*"ab é東😀👍🏽\n\t<|>", "<|im_end|>", "<|eot_id|>", "[INST]", "  ", "word"])
    texts, all_spans = [], []
    for _ in range(data.draw(st.integers(1, 4))):
        text = "".join(data.draw(st.lists(pieces, max_size=30)))
        edges = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6, unique=True)))
        if encoder.accepts(text):
            texts.append(text)
            all_spans.append([(edges[i], edges[i + 1]) for i in range(0, len(edges) - 1, 2)])
    for text, spans, (ids, starts, ends, mask) in zip(texts, all_spans, encoder.encode(texts, True, all_spans)):
        reference = fast.tokenizer.backend.encode(text, add_special_tokens=False)
        assert ids.tolist() == reference.ids
        assert list(zip(starts.tolist(), ends.tolist())) == reference.offsets
        assert mask.tolist() == token_mask(reference.offsets, spans)


def test_a_fastokens_failure_hands_the_batch_to_tokenizers_with_a_warning() -> None:
    """A text the load-time check could not foresee makes fastokens raise: the batch is encoded
    by tokenizers, and so is everything after it, with a warning saying so once."""
    fast_tokenizer = ChatTokenizer.from_model_dir(tokenizer_fixtures.llama3_bpe_dir())
    fast_tokenizer.engine_choice = "fastokens"
    encoder = fast_tokenizer.fast
    assert encoder is not None

    class Refusing:
        def encode_batch_flat(self, texts: Any, add_special_tokens: bool) -> Any:
            raise ValueError("model error: byte 0x0b has no token in vocabulary")

    encoder.fast = Refusing()
    template = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir()), tokenizer=fast_tokenizer)
    reference = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir()))
    reference.tokenizer.engine_choice = "tokenizers"
    chats = [*HARD, *corpus_conversations()[:20]]
    with pytest.warns(chatplate.TokenizerBackendWarning, match="byte 0x0b"):
        ours = template.encode_batch(chats, return_offsets=True, return_assistant_mask=True)
    assert fast_tokenizer.engine == "tokenizers"
    theirs = reference.encode_batch(chats, return_offsets=True, return_assistant_mask=True)
    assert [(e.input_ids, e.offsets, e.labels) for e in ours.encodings] == [(e.input_ids, e.offsets, e.labels) for e in theirs.encodings]


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("masks", [False, True])
def test_a_prompt_with_a_lone_surrogate_is_refused_alike_and_keeps_the_fast_path(name: str, masks: bool) -> None:
    """Only a template can write a lone surrogate (messages are checked first). Both engines
    refuse the prompt with the same error, whether it is encoded whole or, carrying a marked
    control token, piece by piece; it is the prompt's fault, so the fast path stays in use."""
    fast, slow = engines(name)
    source = "{% for m in messages %}{{ m.content }}{% if m.content == 'odd' %}{{ '\\ud800' }}{% endif %}{% endfor %}"
    good = [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "also fine"}]
    bad = [{"role": "user", "content": "odd"}, {"role": "assistant", "content": "reply"}]
    forged = [{"role": "user", "content": "<s><|im_end|><|eot_id|>"}, *bad]  # a forged token: encoded in pieces
    for chats in ([good, bad], [good, forged]):
        errors = []
        for template in (fast, slow):
            odd = chatplate.load(source, tokenizer=template.tokenizer)
            with pytest.raises(chatplate.TemplateError, match="lone surrogate") as caught:
                odd.encode_batch(chats, return_assistant_mask=masks)
            errors.append(str(caught.value))
        assert errors[0] == errors[1]
    assert fast.tokenizer.engine == "fastokens"


def test_a_caller_that_knows_how_much_text_is_coming_gets_fastokens_from_the_start() -> None:
    tokenizer = ChatTokenizer.from_model_dir(tokenizer_fixtures.llama3_bpe_dir())
    tokenizer.expect(1_000)
    assert tokenizer.engine == "tokenizers"  # too little to pay for loading fastokens
    tokenizer.expect(tokenizer.FAST_AFTER_CHARS)
    assert tokenizer.engine == "fastokens"
    slow = ChatTokenizer.from_model_dir(tokenizer_fixtures.llama3_bpe_dir())
    slow.engine_choice = "tokenizers"
    slow.expect(10 * slow.FAST_AFTER_CHARS)
    assert slow.engine == "tokenizers"  # an explicit choice stands


@pytest.mark.parametrize("name", ENGINES)
def test_the_pipeline_is_read_without_the_vocabulary(name: str) -> None:
    from chatplate.tokens.serialized import pipeline, rewrite, split_at_vocab

    def _pipeline(text: str) -> dict[str, Any]:
        return pipeline(text, split_at_vocab(text))

    def _without_pre_tokenizer(text: str) -> str:
        return rewrite(text, split_at_vocab(text), {"pre_tokenizer": None}, {})

    serialized = ChatTokenizer.from_model_dir(tokenizer_fixtures.all_model_dirs()[name]).backend.to_str()
    full = json.loads(serialized)
    expected = {**full, "model": {k: v for k, v in full["model"].items() if k not in ("vocab", "merges")}}
    assert expected["model"]["type"] == "BPE" and "added_tokens" in expected
    assert split_at_vocab(serialized) is not None  # tokenizers' own layout: cut at the vocab
    assert _pipeline(serialized) == expected
    # Another layout (the model first) is parsed whole, to the same result.
    reordered = json.dumps({"model": full["model"], **{k: v for k, v in full.items() if k != "model"}})
    assert _pipeline(reordered) == expected
    # The pipeline fastokens gets for a Metaspace one: the same, without its pre-tokenizer, in
    # either layout.
    for text in (serialized, reordered):
        assert json.loads(_without_pre_tokenizer(text)) == {**full, "pre_tokenizer": None}


def test_the_fast_path_can_load_on_a_thread_while_the_caller_goes_on() -> None:
    import pickle

    tokenizer = ChatTokenizer.from_model_dir(tokenizer_fixtures.mistral_v1_dir())
    tokenizer.expect(tokenizer.FAST_AFTER_CHARS, background=True)
    assert tokenizer._loading is not None
    copy = pickle.loads(pickle.dumps(tokenizer))  # while it loads: the thread stays behind
    assert copy._loading is None and copy.engine == "tokenizers"
    template = chatplate.load(str(tokenizer_fixtures.mistral_v1_dir()), tokenizer=tokenizer)
    reference = chatplate.load(str(tokenizer_fixtures.mistral_v1_dir()))
    reference.tokenizer.engine_choice = "tokenizers"
    chats = [chat for chat in [*HARD, *corpus_conversations()[:60]]
             if isinstance(outcome(lambda chat=chat: reference.encode_batch([chat], return_assistant_mask=True)), list)]
    assert len(chats) > 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = template.encode_batch(chats, return_offsets=True, return_assistant_mask=True)
        theirs = reference.encode_batch(chats, return_offsets=True, return_assistant_mask=True)
    assert tokenizer.engine == "fastokens" and tokenizer._loading is None and tokenizer.fast_seconds > 0
    assert [(e.input_ids, e.offsets, e.labels) for e in ours.encodings] == [(e.input_ids, e.offsets, e.labels) for e in theirs.encodings]
    tokenizer.expect(tokenizer.FAST_AFTER_CHARS, background=True)  # loaded: nothing starts again
    assert tokenizer._loading is None


def held_back_load(monkeypatch: Any) -> threading.Event:
    """Fast paths built from now on wait for the event returned."""
    release = threading.Event()
    build = ChatTokenizer._build_fast

    def slow_build(self: ChatTokenizer) -> Any:
        release.wait(30)
        return build(self)

    monkeypatch.setattr(ChatTokenizer, "_build_fast", slow_build)
    return release


def test_tokenizers_encodes_while_the_fast_path_loads(monkeypatch: Any) -> None:
    release = held_back_load(monkeypatch)
    tokenizer = ChatTokenizer.from_model_dir(tokenizer_fixtures.llama3_bpe_dir())
    template = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir()), tokenizer=tokenizer)
    chats = [*HARD, *corpus_conversations()[:20]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = template.encode_batch(chats, return_offsets=True, return_assistant_mask=True)
        tokenizer.expect(tokenizer.FAST_AFTER_CHARS, background=True)
        assert tokenizer.fast_loading
        assert tokenizer.fast_for(10**9) is None  # no wait: tokenizers meanwhile
        during = template.encode_batch(chats, return_offsets=True, return_assistant_mask=True)
        assert tokenizer.fast_loading and tokenizer.engine == "tokenizers"
        release.set()
        assert tokenizer.fast is not None and not tokenizer.fast_loading
        after = template.encode_batch(chats, return_offsets=True, return_assistant_mask=True)
    assert tokenizer.engine == "fastokens"
    rows = [[(e.input_ids, e.offsets, e.labels) for e in batch.encodings] for batch in (expected, during, after)]
    assert rows[0] == rows[1] == rows[2]


@pytest.mark.parametrize("limit", [1, None])
def test_prepare_renders_ahead_while_the_fast_path_loads_and_tokenizes_with_it(monkeypatch: Any, tmp_path: Any,
                                                                                limit: int | None) -> None:
    """In one process, chunks are rendered while the fast path loads (up to READ_AHEAD_CHARS of
    text, then it waits) and tokenized once it is ready: every chunk by fastokens, the rows those
    of tokenizers."""
    from chatplate.training import pipeline

    release = held_back_load(monkeypatch)
    rendered_while_loading = []
    render = pipeline._render_chunk

    def counting_render(template: Any, chunk: Any, settings: Any) -> Any:
        rendered_while_loading.append(template.tokenizer.fast_loading)
        if sum(rendered_while_loading) == (limit or 3):
            release.set()
        return render(template, chunk, settings)

    engines_used = []
    fast_for = ChatTokenizer.fast_for

    def recording_fast_for(self: ChatTokenizer, chars: int) -> Any:
        found = fast_for(self, chars)
        engines_used.append(found is not None)
        return found

    monkeypatch.setattr(ChatTokenizer, "fast_for", recording_fast_for)
    monkeypatch.setattr(pipeline, "_render_chunk", counting_render)
    if limit is not None:
        monkeypatch.setattr(pipeline, "READ_AHEAD_CHARS", limit)
    source = tmp_path / "in.jsonl"
    chats = [*HARD, *corpus_conversations()] * 4
    source.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats), encoding="utf-8")
    template = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir()))
    template.tokenizer.FAST_AFTER_CHARS = 0  # this small input pays for the fast path here
    chatplate.prepare(source, tmp_path / "fast.jsonl", template, workers=1, chunk_rows=16, on_error="skip")
    assert template.tokenizer.engine == "fastokens"
    assert all(engines_used) and len(engines_used) == len(rendered_while_loading) > 4
    if limit is None:
        assert sum(rendered_while_loading) >= 3
    else:
        assert rendered_while_loading[:2] == [True, False]  # one chunk ahead, then it waited
    monkeypatch.undo()
    reference = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir()))
    reference.tokenizer.engine_choice = "tokenizers"
    chatplate.prepare(source, tmp_path / "slow.jsonl", reference, workers=1, chunk_rows=16, on_error="skip")
    assert (tmp_path / "fast.jsonl").read_text() == (tmp_path / "slow.jsonl").read_text()


@pytest.mark.parametrize("name", ENGINES)
def test_prepare_dataset_gives_the_same_columns_and_types_with_both_engines(name: str) -> None:
    datasets = pytest.importorskip("datasets")
    fast, slow = engines(name)
    # One Arrow type per column: plain role/content messages only.
    chats = [c for c in [*HARD, *corpus_conversations()] if all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in c)]
    dataset = datasets.Dataset.from_list([{"messages": chat} for chat in chats[:40]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = (chatplate.prepare_dataset(dataset, template) for template in (fast, slow))
    assert fast.tokenizer.engine == "fastokens"
    assert ours.features == theirs.features
    assert ours.to_list() == theirs.to_list()
