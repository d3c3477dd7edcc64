"""Chat through llama.cpp (llama-cpp-python) with a real GGUF: the tiny random-weight Llama of
tests/tiny_model.py, written as a GGUF (tiny_llama_gguf()).

Nothing is mocked: llama.cpp evaluates the prompt and generates. What llama.cpp evaluated is
read from the Llama object itself: the token batches it decoded (``Llama.eval``, which calls
``llama_decode``) and ``input_ids[:n_tokens]`` (the tokens behind its KV cache), not what
chatplate sent. Where a test needs a given reply, a logits processor (llama.cpp's custom
sampler) allows only the wanted tokens, or a llama.cpp grammar of token ids does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="the llama.cpp backend needs llama-cpp-python (.ci/run installs it)")
np = pytest.importorskip("numpy")
pytest.importorskip("gguf")  # writes the GGUF
pytest.importorskip("torch")  # builds the tiny model
pytest.importorskip("transformers")

import chatplate  # noqa: E402
from chatplate.chat import Chat, LlamaCppBackend, Sampling, TurnDone  # noqa: E402
from chatplate.responses import ContentDelta  # noqa: E402
from tests.tiny_model import tiny_llama_dir, tiny_llama_gguf  # noqa: E402


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    return tiny_llama_gguf()


@pytest.fixture(scope="module")
def t() -> chatplate.ChatTemplate:
    return chatplate.load(tiny_llama_dir())


def ids(t: chatplate.ChatTemplate, text: str) -> list[int]:
    """The ids of ``text``, a trailing ``<|im_end|>`` as its control token."""
    body, end, _ = text.partition("<|im_end|>")
    out = t.tokenizer.plain.encode(body, add_special_tokens=False).ids
    return out + [t.tokenizer.token_id(end)] if end else out


class Force:
    """A llama.cpp logits processor for one generate call: allows only the next wanted token.
    Keeps the logits it was given (the first step's are the prompt's)."""

    def __init__(self, wanted: Sequence[int]) -> None:
        self.wanted = list(wanted)
        self.logits: list[Any] = []

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        self.logits.append(np.array(logits))
        step = len(self.logits) - 1
        if step >= len(self.wanted):
            return logits
        mask = np.full_like(logits, -np.inf)
        mask[self.wanted[step]] = 0
        return logits + mask


class Observed:
    """What the llama.cpp backend received and produced, read from its Llama object: per
    generate call, the tokens llama.cpp decoded, the tokens in its context afterwards, the
    prefix it kept from the call before (KV cache), and the tokens it generated."""

    def __init__(self, backend: LlamaCppBackend) -> None:
        llama = backend.model
        self.decoded: list[list[int]] = []
        self.context: list[list[int]] = []
        self.reused: list[int] = []
        self.generated: list[list[int]] = []
        evaluate, generate = llama.eval, backend.generate

        def eval(tokens: Sequence[int]) -> None:
            self.decoded[-1].extend(int(i) for i in tokens)
            evaluate(tokens)

        def traced(*args: Any, **kwargs: Any) -> Iterator[list[int]]:
            self.decoded.append([])
            self.generated.append([])
            for chunk in generate(*args, **kwargs):
                if len(self.reused) < len(self.decoded):
                    # The prompt is in the context now: what llama.cpp did not decode, it kept.
                    self.reused.append(llama.n_tokens - len(self.decoded[-1]))
                self.generated[-1].extend(chunk)
                yield chunk
            self.context.append([int(i) for i in llama.input_ids[: llama.n_tokens]])

        llama.eval = eval  # the instance's: Llama.generate calls self.eval
        backend.generate = traced  # type: ignore[method-assign]


def forced_chat(gguf_path: Path, t: chatplate.ChatTemplate, reply: str, **options: Any) -> tuple[Chat, Observed, Force]:
    force = Force(ids(t, reply))
    sampling = Sampling(temperature=0, max_new_tokens=64, extra={"logits_processor": [force]})
    chat = Chat(gguf_path, template=tiny_llama_dir(), sampling=sampling, **options)
    assert isinstance(chat.backend, LlamaCppBackend)
    return chat, Observed(chat.backend), force


def test_the_gguf_tokenizes_as_chatplate(gguf_path: Path, t: chatplate.ChatTemplate) -> None:
    # The GGUF's own vocabulary (llama.cpp's BPE, qwen2 pre-tokenizer) agrees with chatplate on a
    # rendered prompt, and its EOS is the template's end of turn.
    backend = LlamaCppBackend(gguf_path, n_ctx=512)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi! What's 2+2, really?"},
                {"role": "assistant", "content": "It's 4.\n\nAnything else?"}, {"role": "user", "content": "No."}]
    encoding = t.encode(messages, add_generation_prompt=True)
    assert backend.model.tokenize(encoding.text.encode("utf-8"), add_bos=False, special=True) == encoding.input_ids
    assert backend.model.token_eos() == t.tokenizer.token_id("<|im_end|>")
    # So the backend's text path (a template without a tokenizer) gives llama.cpp the same ids.
    observed = Observed(backend)
    one = Sampling(temperature=0, max_new_tokens=1, extra={"logits_processor": [Force(ids(t, "It"))]})
    assert list(backend.generate(None, encoding.text, stop_ids=[], stop=[], sampling=one)) == [ids(t, "It")]
    assert observed.decoded == [encoding.input_ids] and observed.context == [encoding.input_ids]


def test_prompt_ids_stop_and_render_back(gguf_path: Path, t: chatplate.ChatTemplate) -> None:
    chat, observed, force = forced_chat(gguf_path, t, "Hello there.<|im_end|>", system="Be brief.")
    reply = chat.send("Hi!")
    assert reply == {"role": "assistant", "content": "Hello there."}
    prompt = t.encode(chat.messages[:-1], add_generation_prompt=True).input_ids
    generated = ids(t, "Hello there.<|im_end|>")
    # llama.cpp decoded exactly chatplate's encoding, then each generated token but the last:
    # generation stopped at the end of turn (sampled, never decoded), with nothing after it.
    assert chat.last_prompt_ids == prompt
    assert observed.generated == [generated]
    assert observed.decoded == [prompt + generated[:-1]] and observed.context == observed.decoded
    assert len(force.logits) == len(generated)
    # The appended message renders back to the very ids llama.cpp produced.
    full = t.encode(chat.messages).input_ids
    assert full[:len(prompt) + len(generated)] == prompt + generated


def test_send_twice(gguf_path: Path, t: chatplate.ChatTemplate) -> None:
    chat, observed, _ = forced_chat(gguf_path, t, "Hello there.<|im_end|>")
    assert chat.send("Hi!")["content"] == "Hello there."
    first = observed.context[0]
    force = Force(ids(t, "Fine, thanks.<|im_end|>"))
    chat.sampling.extra = {"logits_processor": [force]}
    events = list(chat.stream("How are you?"))
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)).strip() == "Fine, thanks."
    assert isinstance(events[-1], TurnDone) and events[-1].message == {"role": "assistant", "content": "Fine, thanks."}
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant"]
    prompt = t.encode(chat.messages[:-1], add_generation_prompt=True).input_ids
    generated = ids(t, "Fine, thanks.<|im_end|>")
    assert observed.generated[1] == generated
    # The second call's context is the second prompt and its reply, nothing left over from the
    # first: llama.cpp kept its whole first context in the KV cache (chatplate re-encodes the
    # first turn to the very ids it held) and decoded the rest.
    assert observed.context[1] == prompt + generated[:-1]
    assert prompt[:len(first)] == first and observed.reused == [0, len(first)]
    assert observed.decoded[1] == prompt[len(first):] + generated[:-1]
    # And that state is right: the reply's first logits are a fresh llama.cpp's for the same prompt.
    fresh = LlamaCppBackend(gguf_path, n_ctx=512)
    recorded = Force([])
    one = Sampling(temperature=0, max_new_tokens=1, extra={"logits_processor": [recorded]})
    list(fresh.generate(prompt, "", stop_ids=[], stop=[], sampling=one))
    assert np.allclose(force.logits[0], recorded.logits[0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("end", ["<|im_end|>", "<|endoftext|>"])
def test_grammar_and_llama_cpp_end_of_generation(gguf_path: Path, t: chatplate.ChatTemplate, end: str) -> None:
    # A llama.cpp grammar (passed through Sampling.extra) forces the text; once it is complete,
    # llama.cpp allows only its end-of-generation tokens, here <|im_end|> (the template's end of
    # turn) and <|endoftext|>. Whichever the model takes (the other is banned), the turn ends there.
    text = ids(t, "Hello there.")
    grammar = llama_cpp.LlamaGrammar.from_string("root ::= " + " ".join(f"<[{i}]>" for i in text), verbose=False)
    other = t.tokenizer.token_id("<|endoftext|>" if end == "<|im_end|>" else "<|im_end|>")

    def ban(_ids: Any, logits: Any) -> Any:
        logits[other] = -np.inf
        return logits

    sampling = Sampling(temperature=0, max_new_tokens=16, extra={"grammar": grammar, "logits_processor": [ban]})
    chat = Chat(gguf_path, template=tiny_llama_dir(), sampling=sampling)
    observed = Observed(chat.backend)  # type: ignore[arg-type]
    assert chat.send("Hi!") == {"role": "assistant", "content": "Hello there."}
    # The template's end of turn is yielded (the parser sees it); llama.cpp's other end token is
    # not text of the reply and ends generation without being yielded.
    assert observed.generated == [text + [t.tokenizer.token_id(end)] if end == "<|im_end|>" else text]


def test_unforced_generation_ends(gguf_path: Path) -> None:
    # Random weights, nothing forced: generation ends (max_new_tokens, or an end token) with a message.
    chat = Chat(gguf_path, template=tiny_llama_dir(), sampling=Sampling(temperature=1.0, max_new_tokens=5, seed=3))
    observed = Observed(chat.backend)  # type: ignore[arg-type]
    assert chat.send("Hi")["role"] == "assistant"
    assert 1 <= len(observed.generated[0]) <= 5


def test_context_limit(gguf_path: Path, t: chatplate.ChatTemplate) -> None:
    # A context llama.cpp cannot hold the prompt in is a clear InputError, not llama_decode's code;
    # a reply that fills the context ends there, like max_new_tokens.
    backend = LlamaCppBackend(gguf_path, n_ctx=64)
    size = backend.model.n_ctx()  # llama.cpp may round the context up
    chat = Chat(template=t, backend=backend, sampling=Sampling(temperature=1.0, max_new_tokens=10 * size, seed=1))
    prompt = t.encode([{"role": "user", "content": "Hi"}], add_generation_prompt=True).input_ids
    observed = Observed(backend)
    chat.send("Hi")
    assert len(prompt) + len(observed.generated[0]) <= size
    before = list(chat.messages)
    with pytest.raises(chatplate.InputError, match=f"context of {size}"):
        chat.send("word " * size)
    assert chat.messages[: len(before)] == before


class _IdsServer:
    """An OpenAI-compatible completions endpoint that takes token-id prompts, as vLLM and SGLang
    do (llama-cpp-python's own server takes text only): llama.cpp generates from the ids it is
    sent, over real HTTP on 127.0.0.1. It keeps every prompt it received."""

    def __init__(self, gguf_path: Path, force: Force) -> None:
        import http.server
        import json
        import threading

        llama = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=512, verbose=False)
        self.prompts: list[Any] = []
        received = self.prompts

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(body["prompt"])
                if self.path != "/v1/completions" or not isinstance(body["prompt"], list):
                    self.send_error(400, "this server takes token ids")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                stops = set(body.get("stop") or [])
                tokens = llama.generate(body["prompt"], temp=0, reset=True, logits_processor=[force])
                for _, token in zip(range(body["max_tokens"]), tokens):
                    text = llama.detokenize([token], special=True).decode("utf-8", "replace")
                    if text in stops or llama.token_eos() == token:
                        break
                    self.wfile.write(b"data: " + json.dumps({"choices": [{"text": text}]}).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_openai_backend_sends_token_ids(gguf_path: Path, t: chatplate.ChatTemplate) -> None:
    from chatplate.chat import OpenAIBackend

    force = Force(ids(t, "Hello there.<|im_end|>"))
    served = _IdsServer(gguf_path, force)
    try:
        backend = OpenAIBackend(served.url, timeout=60)
        chat = Chat(template=t, backend=backend, sampling=Sampling(temperature=0, max_new_tokens=32))
        assert chat.send("Hi!") == {"role": "assistant", "content": "Hello there."}
    finally:
        served.server.shutdown()
    # The server got chatplate's encoding as ids (never the text), and kept taking ids.
    assert served.prompts == [t.encode([{"role": "user", "content": "Hi!"}], add_generation_prompt=True).input_ids]
    assert backend.accepts_ids
