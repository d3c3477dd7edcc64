"""Generation backends: where the prompt's token ids go and what the model sends back.

Each backend takes chatplate's prompt (token ids where it accepts them, so the model sees exactly
chatplate's encoding), stops on the template's end-of-turn tokens, and yields what the model
generates as it comes (token ids, or text from a server that sends text). All are optional:

- :class:`TransformersBackend`: transformers + torch in this process, for a model directory
  with weights (``pip install 'chatplate[transformers]'``; CPU works);
- :class:`LlamaCppBackend`: llama.cpp through ``llama-cpp-python``, for a ``.gguf`` file;
- :class:`OpenAIBackend`: any OpenAI-compatible server by URL, through its completions endpoint
  with chatplate's prompt, so the template is applied here, exactly.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import InputError, MissingDependencyError

__all__ = ["Sampling", "Backend", "TransformersBackend", "LlamaCppBackend", "OpenAIBackend", "backend_for"]


@dataclass
class Sampling:
    """Sampling options, passed through to the backend. ``temperature=0`` is greedy."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None
    # Anything else the backend's own generate call takes (transformers: logits_processor, ...).
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """What :class:`chatplate.Chat` needs from a model."""

    def generate(
        self, ids: Sequence[int] | None, text: str, *, stop_ids: Sequence[int], stop: Sequence[str], sampling: Sampling
    ) -> Iterator[list[int] | str]:
        """Continue the prompt (its token ids when the template has a tokenizer, and its text);
        yield what is generated as it comes: lists of token ids, or text."""
        ...


class TransformersBackend:
    """A transformers causal LM loaded in this process from a model directory.

    >>> backend = TransformersBackend("path/to/model")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "cpu", dtype: Any = None) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as exc:
            raise MissingDependencyError(
                "the transformers backend needs transformers and torch: pip install 'chatplate[transformers]' "
                "(CPU torch: pip install torch==2.13.0)", extra="transformers",
            ) from exc
        self._torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
        self.model.eval()
        self.device = device

    def generate(
        self, ids: Sequence[int] | None, text: str, *, stop_ids: Sequence[int], stop: Sequence[str], sampling: Sampling
    ) -> Iterator[list[int]]:
        if ids is None:
            raise InputError("the transformers backend takes token ids: the template needs a tokenizer "
                             "(load it from the model directory)")
        torch = self._torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        chunks: queue.Queue[Any] = queue.Queue()
        done = object()

        class _Ids(BaseStreamer):  # type: ignore[misc]
            # transformers sends the prompt first, then each new token.
            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                chunks.put([int(i) for i in value.reshape(-1).tolist()])

            def end(self) -> None:
                chunks.put(done)

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sampling.temperature > 0,
            "eos_token_id": list(stop_ids) or None,
            "pad_token_id": stop_ids[0] if stop_ids else None,
            **({"temperature": sampling.temperature, "top_p": sampling.top_p} if sampling.temperature > 0 else {}),
            **sampling.extra,
        }
        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):  # type: ignore[misc]
            # The caller stopped reading (Ctrl-C): stop generating too.
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        criteria = StoppingCriteriaList([_Cancel(), *kwargs.pop("stopping_criteria", [])])
        input_ids = torch.tensor([list(ids)], device=self.device)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.no_grad():
                    self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), streamer=_Ids(),
                                        stopping_criteria=criteria, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                failure.append(exc)
                chunks.put(done)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            while (item := chunks.get()) is not done:
                yield item
        finally:
            cancelled.set()
            thread.join()
        if failure:
            raise failure[0]


class LlamaCppBackend:
    """A ``.gguf`` model run by llama.cpp (``pip install llama-cpp-python``).

    Token ids are sent as chatplate encodes them when the template has a tokenizer; otherwise
    the rendered text goes to llama.cpp's tokenizer with special tokens parsed.
    """

    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = 4096, **options: Any) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise MissingDependencyError(
                "the llama.cpp backend needs llama-cpp-python: pip install 'chatplate[llama-cpp]' (it compiles llama.cpp; "
                "minutes)", extra="llama-cpp",
            ) from exc
        self.model = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, verbose=False, **options)
        # llama.cpp's end-of-generation tokens (EOS, EOT, <|endoftext|>, <|eom_id|>, ...): it stops
        # on any of them, and a grammar, once complete, allows only them.
        if hasattr(llama_cpp, "llama_vocab_is_eog"):
            vocab = llama_cpp.llama_model_get_vocab(self.model.model)
            self._is_eog = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        else:  # llama-cpp-python before the vocab API (0.3.5 and older)
            self._is_eog = lambda token: bool(llama_cpp.llama_token_is_eog(self.model.model, token))

    def generate(
        self, ids: Sequence[int] | None, text: str, *, stop_ids: Sequence[int], stop: Sequence[str], sampling: Sampling
    ) -> Iterator[list[int]]:
        tokens = list(ids) if ids is not None else self.model.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if sampling.seed is not None:
            self.model.set_seed(sampling.seed)
        stops = set(stop_ids) | {self.model.token_eos()}
        room = self.model.n_ctx() - len(tokens)
        if room <= 0:
            # llama.cpp itself would fail with a bare "llama_decode returned 1"
            raise InputError(
                f"the prompt is {len(tokens)} tokens but the model was loaded with a context of "
                f"{self.model.n_ctx()}: load it with a larger n_ctx, or shorten the conversation (/clear, /undo)"
            )
        if sampling.max_new_tokens <= 0:
            return
        limit = min(sampling.max_new_tokens, room)  # a full context ends the reply like max_new_tokens
        count = 0
        for token in self.model.generate(tokens, temp=sampling.temperature, top_p=sampling.top_p, reset=True,
                                         **sampling.extra):
            if token not in stops and self._is_eog(token):
                return  # the model's end of generation, not the template's end of turn: no text of the reply
            yield [int(token)]
            count += 1
            if token in stops or count >= limit:
                return


class OpenAIBackend:
    """An OpenAI-compatible server (vLLM, llama.cpp's server, SGLang, ...): the completions
    endpoint with chatplate's prompt, streamed. The prompt goes as token ids; a server that
    refuses them gets the prompt text instead (and keeps getting it).

    >>> backend = OpenAIBackend("http://127.0.0.1:8000")  # doctest: +SKIP
    """

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None, timeout: float = 600) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/v1") else base + "/v1"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.accepts_ids = True  # until the server refuses them
        self.last_usage: dict[str, Any] | None = None  # the server's token counts for the last call

    def generate(
        self, ids: Sequence[int] | None, text: str, *, stop_ids: Sequence[int], stop: Sequence[str], sampling: Sampling
    ) -> Iterator[str]:
        body: dict[str, Any] = {
            "prompt": list(ids) if ids is not None and self.accepts_ids else text,
            "stream": True,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            **({"stop": list(stop)} if stop else {}),
            **({"seed": sampling.seed} if sampling.seed is not None else {}),
            **({"model": self.model} if self.model else {}),
            **sampling.extra,
        }
        try:
            response = self._post("/completions", body)
        except _Refused:
            self.accepts_ids = False  # this server wants text: send the rendered prompt from now on
            response = self._post("/completions", {**body, "prompt": text})
        with response:
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if chunk.get("usage"):
                    self.last_usage = chunk["usage"]
                choice = (chunk.get("choices") or [{}])[0]
                if choice.get("text"):
                    yield choice["text"]

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        import urllib.error  # only a server chat needs them; `import chatplate` stays light
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, json.dumps(body).encode("utf-8"), headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            if exc.code in (400, 422) and isinstance(body.get("prompt"), list):
                raise _Refused(detail) from exc
            raise InputError(f"{self.url}{path}: HTTP {exc.code}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise InputError(f"{self.url}{path}: cannot connect ({exc.reason}); is the server running?") from exc


class _Refused(Exception):
    """The server refused a token-id prompt."""


def backend_for(model: str | os.PathLike[str]) -> Backend:
    """The backend a model source calls for: a URL, a ``.gguf`` file, or a model directory."""
    text = str(model)
    if text.startswith(("http://", "https://")):
        return OpenAIBackend(text)
    path = Path(text)
    if path.suffix.lower() == ".gguf":
        return LlamaCppBackend(path)
    if path.is_dir() and (path / "config.json").is_file():
        return TransformersBackend(path)
    raise InputError(
        f"{text}: no model to generate with: give a model directory with config.json and weights, a .gguf "
        "file, or the URL of an OpenAI-compatible server"
    )
