"""``ChatTemplate``: a compiled chat template and the render calls on it."""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from os import PathLike
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import engine
from .errors import Fix, InputError, TemplateNotFoundError, UnusedVariableWarning
from .limits import Limits
from .rendering import Renderer, RenderResult, check_limits, render_kwargs
from .tokens.encoding import BatchEncoding, Encoding
from .tokens.tokenizer import ChatTokenizer

if TYPE_CHECKING:
    from pathlib import Path

    from .responses.formats import ResponseFormat
    from .responses.stream import ResponseStream
    from .trajectories import PrefixStability, Trajectory

__all__ = ["ChatTemplate", "RenderResult"]

Tool = Mapping[str, Any] | Callable[..., Any]
# Variables a caller may pass whether or not the template reads them: transformers passes the
# special-token map to every template.
_SPECIAL_TOKEN_VARIABLES = frozenset(
    ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
     "additional_special_tokens")
)
_T = TypeVar("_T")
TokenizerLike = Any  # a tokenizer.json path, a model directory, a tokenizers.Tokenizer or a ChatTokenizer


class _OnRenderer(Generic[_T]):
    """A ``ChatTemplate`` attribute kept on its ``Renderer``: read-only, or settable through
    ``convert`` (``settable=True``: as it is)."""

    def __init__(self, convert: Callable[[Any], _T] | None = None, *, settable: bool = False) -> None:
        self.convert = convert if convert is not None or not settable else (lambda value: value)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, template: Any, owner: type | None = None) -> Any:
        return self if template is None else getattr(template.renderer, self.name)

    def __set__(self, template: Any, value: Any) -> None:
        if self.convert is None:
            raise AttributeError(f"ChatTemplate.{self.name} cannot be set; build a new ChatTemplate")
        setattr(template.renderer, self.name, self.convert(value))


class ChatTemplate:
    """A chat template, compiled once, rendering conversations exactly as transformers does.

    ``source`` is the Jinja text, or a mapping of names to Jinja texts (named templates: the one
    called ``tool_use`` is picked when ``tools`` are given, ``default`` otherwise).

    >>> t = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
    >>> t.render([{"role": "user", "content": "Hi"}])
    '<user>Hi'
    """

    def __init__(
        self,
        source: str | Mapping[str, str],
        bos_token: str | None = None,
        eos_token: str | None = None,
        *,
        special_tokens: Mapping[str, str] | None = None,
        origin: str | None = None,
        tokenizer: TokenizerLike | None = None,
        limits: Limits | None = None,
        roles: Iterable[str] = (),
        response_template: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(source, str):
            templates = {"default": source}
        elif isinstance(source, Mapping) and source:
            templates = dict(source)
        else:
            raise InputError(
                f"ChatTemplate: expected the template text or a mapping of names to template texts, "
                f"got {type(source).__name__}"
            )
        for name, text in templates.items():
            if not isinstance(text, str):
                raise InputError(f"ChatTemplate: template {name!r} must be a string, got {type(text).__name__}")
            if not text.strip():
                raise InputError(
                    f"ChatTemplate: template {name!r} is empty; pass the Jinja text of a chat template"
                    if len(templates) > 1 else "ChatTemplate(source): the source is an empty string; pass the Jinja "
                    "text of a chat template (or use chatplate.load for files, model directories and built-ins)"
                )
        # The rendering layer under this façade (what tokens and training are given); the
        # attributes below read and set it.
        self.renderer = Renderer(templates, bos_token, eos_token, special_tokens, origin, limits, frozenset(roles))
        self._tokenizer_source = tokenizer
        self._tokenizer: ChatTokenizer | None = tokenizer if isinstance(tokenizer, ChatTokenizer) else None
        # Per named template: (names accepted silently, names the template reads); filled lazily
        # and rebuilt after unpickling (__reduce__ goes through __init__).
        self._read_names: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._warned_unused: set[str] = set()
        # A transformers response_template (tokenizer_config.json), honoured over detection.
        self.response_template = dict(response_template) if response_template is not None else None
        self._response_formats: dict[Any, Any] = {}
        self._response_template_compiled: tuple[Any, Any] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Compiled templates do not pickle: worker processes get the sources and compile them
        # again (cached by source there), with the tokenizer as it is (loaded or not).
        return (
            _rebuild_template,
            (self.templates, self.bos_token, self.eos_token, self.special_tokens, self.origin,
             self._tokenizer if self._tokenizer is not None else self._tokenizer_source, self.limits, self.roles,
             self.response_template),
        )

    # What the template renders with lives on its renderer; these read it (and set it where a
    # caller may change it).
    templates = _OnRenderer[dict[str, str]]()  # name -> Jinja text ("default", "tool_use", ...)
    bos_token = _OnRenderer[str | None](settable=True)
    eos_token = _OnRenderer[str | None](settable=True)
    special_tokens = _OnRenderer[dict[str, str]]()  # unk_token, pad_token..., as transformers passes them
    origin = _OnRenderer[str | None]()  # a path, hub id or built-in name, for messages
    limits = _OnRenderer[Limits](check_limits)
    roles = _OnRenderer[frozenset[str]](frozenset)  # roles beyond the standard ones that become control tokens

    @property
    def tokenizer(self) -> ChatTokenizer:
        """The attached tokenizer, loaded on first use (rendering never needs it)."""
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self._tokenizer_source, self.origin)
        return self._tokenizer

    @property
    def has_tokenizer(self) -> bool:
        """Whether a tokenizer is attached (loaded or still to load), as ``encode`` needs.

        >>> ChatTemplate("{{ messages[0].content }}").has_tokenizer
        False
        """
        return self._tokenizer is not None or self._tokenizer_source is not None

    @property
    def source(self) -> str:
        """The Jinja text used when no tools are given (the ``default`` template)."""
        return self.renderer.source(None)

    def __repr__(self) -> str:
        names = ", ".join(self.templates)
        origin = f", origin={self.origin!r}" if self.origin else ""
        return f"ChatTemplate(templates=[{names}]{origin})"

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        limits: Limits | None = None,
        **variables: Any,
    ) -> str:
        """Render ``messages`` to the prompt string, byte for byte as transformers'
        ``apply_chat_template(..., tokenize=False)`` would.

        ``continue_final_message`` leaves the last message open (``True`` continues ``content``;
        a string names the field, e.g. ``"reasoning_content"``). ``now`` fixes the time
        ``strftime_now`` reports. Extra keyword arguments become template variables and override
        ``bos_token``/``eos_token``.

        >>> t = ChatTemplate("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", bos_token="<s>")
        >>> t.render([{"role": "user", "content": "Hi"}])
        '<s>Hi'
        """
        if variables:
            self._warn_unused(tools, variables.keys(), "render")
        return self.renderer.render(self.renderer.prepare(
            messages, tools, documents, add_generation_prompt, continue_final_message, now, variables, False, None, limits,
        )).text

    def render_spans(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        limits: Limits | None = None,
        **variables: Any,
    ) -> RenderResult:
        """Like :meth:`render`, also returning the ``{% generation %}`` spans.

        >>> t = ChatTemplate("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}")
        >>> t.render_spans([{"role": "assistant", "content": "Hi"}]).generation_spans
        [(0, 2)]
        """
        if variables:
            self._warn_unused(tools, variables.keys(), "render_spans")
        return self.renderer.render(self.renderer.prepare(
            messages, tools, documents, add_generation_prompt, continue_final_message, now, variables, True, None, limits,
        ))

    def encode(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        sanitize_control_tokens: bool = True,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_offsets: bool = False,
        return_assistant_mask: bool = False,
        train_roles: Sequence[str] | None = None,
        train_end_of_turn: bool = True,
        train_last_turn_only: bool = False,
        limits: Limits | None = None,
        **variables: Any,
    ) -> Encoding:
        """Render and encode one conversation with the attached tokenizer.

        The ids equal transformers' ``apply_chat_template(..., tokenize=True)`` (the rendered text
        encoded without adding special tokens); with ``sanitize_control_tokens`` (the default) a
        control token inside message data, tools, documents or variables is encoded as text.
        ``truncation=True`` keeps the first ``max_length`` tokens; ``truncation="turns"`` drops
        the oldest whole turns instead, never the system prompt, the last user turn or the
        generation prompt. ``return_offsets`` adds ``(start, end)`` characters per token.

        ``return_assistant_mask`` adds ``enc.assistant_mask`` (1 for each token the model is
        trained to produce) and ``enc.labels`` (those ids, -100 elsewhere), from the template's
        ``{% generation %}`` blocks or, without them, derived for any template: a turn's text
        after the generation prompt through its end-of-turn marker. ``train_roles`` (default
        the assistant), ``train_end_of_turn`` (default yes) and ``train_last_turn_only`` choose
        what is trained; a message with ``"train": False`` is never trained.

            enc = load("model-dir").encode(messages, add_generation_prompt=True)
            enc.input_ids[:3], enc.text[:20]
            enc = load("model-dir").encode(chat, return_assistant_mask=True)
            enc.labels[:5]
        """
        from .tokens.encoder import encode_conversations

        if variables:
            self._warn_unused(tools, variables.keys(), "encode")
        [encoding] = encode_conversations(
            self.renderer,
            self.tokenizer,
            [messages],
            render_kwargs=render_kwargs(tools, documents, add_generation_prompt, continue_final_message, now, variables, limits),
            sanitize_control_tokens=sanitize_control_tokens,
            truncation=truncation,
            max_length=max_length,
            return_offsets=return_offsets,
            masks=_mask_options(return_assistant_mask, train_roles, train_end_of_turn, train_last_turn_only),
        )
        return encoding

    def encode_batch(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        now: datetime | None = None,
        sanitize_control_tokens: bool = True,
        padding: bool | str = False,
        padding_side: str | None = None,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_offsets: bool = False,
        return_assistant_mask: bool = False,
        train_roles: Sequence[str] | None = None,
        train_end_of_turn: bool = True,
        train_last_turn_only: bool = False,
        limits: Limits | None = None,
        **variables: Any,
    ) -> BatchEncoding:
        """Encode many conversations; the tokenizer runs once for the batch, on its own threads.

        ``padding`` is ``False``, ``True``/``"longest"`` or ``"max_length"``; ``return_tensors``
        ``"np"`` or ``"pt"`` gives arrays (numpy/torch needed only then). With
        ``return_assistant_mask`` (options as in :meth:`encode`) the batch also holds
        ``assistant_masks`` and ``labels``, padded with 0 and -100.

            batch = t.encode_batch(chats, padding=True, return_tensors="np")
            batch["input_ids"].shape
        """
        from .tokens.encoder import batch_from, encode_conversations

        if variables:
            self._warn_unused(tools, variables.keys(), "encode_batch")
        encodings = encode_conversations(
            self.renderer,
            self.tokenizer,
            list(conversations),
            render_kwargs=render_kwargs(tools, documents, add_generation_prompt, continue_final_message, now, variables, limits),
            sanitize_control_tokens=sanitize_control_tokens,
            truncation=truncation,
            max_length=max_length,
            return_offsets=return_offsets,
            masks=_mask_options(return_assistant_mask, train_roles, train_end_of_turn, train_last_turn_only),
        )
        return batch_from(
            encodings,
            self.tokenizer,
            padding=padding,  # type: ignore[arg-type]
            max_length=max_length,
            padding_side=padding_side,
            return_tensors=return_tensors,
        )

    def apply_chat_template(
        self,
        conversation: Any,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        sanitize_control_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        return_assistant_tokens_mask: bool = False,
        **kwargs: Any,
    ) -> Any:
        """transformers' ``tokenizer.apply_chat_template``, same keywords and return shapes:
        a string (``tokenize=False``), ids, or a dict with ``input_ids`` and ``attention_mask``;
        a list of conversations gives a batch. Only ``sanitize_control_tokens`` defaults to
        ``True`` here: identical output unless data smuggles in control tokens.

            t.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        """
        template = self
        if chat_template is not None:
            text = self.templates.get(chat_template, chat_template)
            template = ChatTemplate(
                text, self.bos_token, self.eos_token, special_tokens=self.special_tokens, origin=self.origin,
                tokenizer=self._tokenizer or self._tokenizer_source,
            )
        if kwargs:
            # Warn here so the warning points at the caller; the call below finds it already given.
            # Keywords the method below takes as parameters are not template variables.
            consumed = _keyword_parameters("encode_batch" if tokenize else "render")
            template._warn_unused(tools, kwargs.keys() - consumed, "apply_chat_template")
        batched = isinstance(conversation, (list, tuple)) and bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = list(conversation) if batched else [conversation]
        common = dict(
            tools=tools,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            **kwargs,
        )
        if not tokenize:
            texts = [template.render(c, **common) for c in conversations]
            return texts if batched else texts[0]
        if return_assistant_tokens_mask and not return_dict:
            raise InputError("return_assistant_tokens_mask=True needs return_dict=True (and tokenize=True)")
        extra = dict(tokenizer_kwargs or {})
        padding_side = extra.pop("padding_side", None)
        if extra:
            raise InputError(f"tokenizer_kwargs: unsupported keys {sorted(extra)}")
        batch = template.encode_batch(
            conversations,
            sanitize_control_tokens=sanitize_control_tokens,
            padding=padding,
            padding_side=padding_side,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
            return_assistant_mask=return_assistant_tokens_mask,
            **common,
        )
        if not batched and return_tensors is None:
            batch = BatchEncoding({k: v[0] for k, v in batch.items()}, batch.encodings)
        return batch if return_dict else batch["input_ids"]

    def trajectory(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        now: datetime | None = None,
        **variables: Any,
    ) -> Trajectory:
        """Start a token-in, token-out trajectory at ``messages``: ``.prompt_ids`` go to the
        engine, ``.add_completion(ids)`` takes what it sampled, ``.extend(new_messages)`` gives
        the next prompt with the sampled ids kept verbatim (see :mod:`chatplate.trajectories`).

            traj = load("model-dir").trajectory([{"role": "user", "content": "Hi"}])
            traj.add_completion(sampled_ids, logprobs)
            next_ids = traj.extend([{"role": "tool", "content": "42"}])
        """
        from .trajectories import Trajectory

        if variables:
            self._warn_unused(tools, variables.keys(), "trajectory")
        return Trajectory(self, messages, tools=tools, documents=documents, now=now, variables=variables)

    def prefix_stability(
        self, *, tools: Sequence[Tool] | None = None, now: datetime | None = None, **variables: Any
    ) -> PrefixStability:
        """Whether appending turns (tool results, user turns) keeps what the model saw as a
        prefix of later prompts, probed before any rollout; where not, a witness per rewritten
        field (past reasoning, an empty think block, tool calls, the turn's end, the date...)
        and the template variable that fixes it, if any (see :mod:`chatplate.trajectories`).

        >>> import chatplate
        >>> chatplate.load("qwen2.5").prefix_stability().stable
        True
        """
        from .trajectories import prefix_stability

        if variables:
            self._warn_unused(tools, variables.keys(), "prefix_stability")
        return prefix_stability(self, tools=tools, now=now, **variables)

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Turn token ids back into text with the attached tokenizer, as transformers'
        ``tokenizer.decode(ids, skip_special_tokens=...)`` does (see :meth:`ChatTokenizer.decode`).

        ``ids`` is one sequence: a list or tuple of ints, or a 1-D numpy array or torch tensor.

            t = load("model-dir")
            t.decode(t.encode(messages).input_ids, skip_special_tokens=True)
        """
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    @property
    def response_format(self) -> ResponseFormat:
        """How this template writes an assistant turn, found from what it renders (see
        ``chatplate.responses``); ``.name`` and ``.reason`` say what matched and why.

        >>> import chatplate
        >>> chatplate.load("qwen2.5").response_format.name
        'hermes'
        """
        return self._response_format({})

    def detect_response_format(self, **variables: Any) -> ResponseFormat:
        """:attr:`response_format` for the generation prompt these template variables give
        (``enable_thinking=False`` may close the reasoning the prompt opens). Cached."""
        return self._response_format(variables)

    def parse_response(
        self,
        response: str | Sequence[int],
        *,
        prefix: str | Sequence[int] | None = None,
        tools: list[Any] | None = None,
        reasoning_field: str = "reasoning_content",
        **variables: Any,
    ) -> dict[str, Any]:
        """Turn what the model generated (text, or token ids with the attached tokenizer) into
        the assistant message templates take: ``content``, reasoning, ``tool_calls``.

        ``prefix`` is the prompt the response continues (text or ids); ``None`` means the
        template's own generation prompt (rendered with ``variables``, such as
        ``enable_thinking``). With ``tools``, untyped arguments are typed by the tools' schemas
        and calls to unknown tools are flagged. The result is a dict with ``.calls`` (each call's
        ``status`` and ``raw`` text), ``.stop`` and ``.trailing``.

        >>> import chatplate
        >>> t = chatplate.load("qwen2.5")
        >>> t.parse_response('Let me check.<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call><|im_end|>')
        {'role': 'assistant', 'content': 'Let me check.', 'tool_calls': [{'type': 'function', 'function': {'name': 'f', 'arguments': {'x': 1}}}]}
        """
        return self.response_parser(
            prefix=prefix, tools=tools, reasoning_field=reasoning_field, **variables
        ).parse(self._response_text(response, "response"))

    def response_parser(
        self,
        *,
        prefix: str | Sequence[int] | None = None,
        tools: list[Any] | None = None,
        reasoning_field: str = "reasoning_content",
        **variables: Any,
    ) -> ResponseStream:
        """A streaming parser: ``feed(text_or_ids)`` returns events (reasoning and content
        deltas, tool call started / arguments delta / done), ``finish()`` the message that
        :meth:`parse_response` gives for the whole text.

        >>> import chatplate
        >>> parser = chatplate.load("qwen2.5").response_parser()
        >>> [type(e).__name__ for e in parser.feed("Hi<tool_")]
        ['ContentDelta']
        >>> parser.finish()["content"]
        'Hi<tool_'
        """
        from .responses.stream import ResponseStream

        from .responses.parser import ResponseParser

        text_prefix = self._response_text(prefix, "prefix") if prefix is not None else None
        parser: Any
        if self.response_template is not None:
            if text_prefix is None:
                text_prefix = self._response_format(variables).generation_prompt
            parser = self._compiled_response_template().stream(prefix=text_prefix, tools=tools)
        else:
            fmt = self._response_format(variables)
            parser = ResponseParser(fmt, prefix=fmt.generation_prompt if text_prefix is None else text_prefix,
                                    tools=tools, reasoning_field=reasoning_field)
        return ResponseStream(parser, self._tokenizer_for_stream())

    def save(self, directory: str | PathLike[str]) -> list[Path]:
        """Write the templates as transformers 5 does (``chat_template.jinja`` and
        ``additional_chat_templates/NAME.jinja``), keeping the rest of ``tokenizer_config.json``.

        ChatTemplate("{{ messages[0].content }}").save("my-model")
        [PosixPath('my-model/chat_template.jinja')]
        """
        from .sources.model_dir import save_templates

        return save_templates(self, directory)

    # -- internals -------------------------------------------------------------------------

    def _response_format(self, variables: Mapping[str, Any]) -> ResponseFormat:
        key = tuple(sorted((k, repr(v)) for k, v in variables.items()))
        found = self._response_formats.get(key)
        if found is None:
            from .responses.detection import detect_format

            found = self._response_formats[key] = detect_format(
                self.render, source="\n".join(self.templates.values()), eos_token=self.eos_token, variables=variables
            )
        return found

    def _compiled_response_template(self) -> Any:
        """``response_template`` compiled once (per dict assigned), not on every parse."""
        from .responses.response_template import ResponseTemplate

        cached = self._response_template_compiled
        if cached is None or cached[0] is not self.response_template:
            cached = self._response_template_compiled = (
                self.response_template, ResponseTemplate.from_dict(self.response_template))  # type: ignore[arg-type]
        return cached[1]

    def _response_text(self, value: Any, what: str) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, Sequence) or hasattr(value, "tolist"):
            return self.tokenizer.decode(value, skip_special_tokens=False)
        raise InputError(f"{what}: expected text or a sequence of token ids, got {type(value).__name__}")

    def _tokenizer_for_stream(self) -> ChatTokenizer | None:
        return self.tokenizer if self.has_tokenizer else None

    def _warn_unused(self, tools: Any, names: AbstractSet[str], method: str) -> None:
        """Warn once per name about extra keywords the template picked for ``tools`` never reads.

        Called directly by each public method, so ``stacklevel=3`` is the caller of that method.
        """
        try:
            name = self.renderer.pick(tools)
        except TemplateNotFoundError:
            return  # the render itself raises this, in its own order
        known = self._read_names.get(name)
        if known is None:
            known = self._read_names[name] = self._template_reads(name)
        accepted, reads = known
        unread = names - accepted
        if not unread or not (unread := unread - self._warned_unused):
            return
        self._warned_unused |= unread
        candidates = sorted(reads | _keyword_parameters(method))
        for keyword in sorted(unread):
            match = difflib.get_close_matches(keyword, candidates, n=1)
            hint = f"; did you mean {match[0]!r}? It is ignored." if match else "; it is ignored."
            warnings.warn(
                f"keyword {keyword!r} is not read by the template ({self.renderer.label(name)}){hint}",
                UnusedVariableWarning,
                stacklevel=3,
            )

    def _template_reads(self, name: str) -> tuple[frozenset[str], frozenset[str]]:
        reads = engine.read_variables(self.templates[name])
        return reads | _SPECIAL_TOKEN_VARIABLES | frozenset(self.special_tokens), reads

@functools.cache
def _keyword_parameters(method: str) -> frozenset[str]:
    """The named keyword parameters of a ``ChatTemplate`` method (never template variables)."""
    parameters = inspect.signature(getattr(ChatTemplate, method)).parameters.values()
    return frozenset(
        p.name for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "messages", "conversation", "conversations")
    )


def _rebuild_template(
    templates: dict[str, str], bos_token: Any, eos_token: Any, special_tokens: dict[str, str], origin: Any, tokenizer: Any,
    limits: Limits, roles: frozenset[str], response_template: Mapping[str, Any] | None = None,
) -> ChatTemplate:
    return ChatTemplate(
        templates, bos_token, eos_token, special_tokens=special_tokens, origin=origin, tokenizer=tokenizer, limits=limits,
        roles=roles, response_template=response_template,
    )


def _mask_options(wanted: bool, roles: Any, end_of_turn: bool, last_turn_only: bool) -> Any:
    if not wanted:
        return None
    from .training.masks import MaskOptions

    return MaskOptions.from_arguments(roles, end_of_turn, last_turn_only, None)


def _load_tokenizer(source: Any, origin: str | None) -> ChatTokenizer:
    if source is None:
        raise InputError(
            f"{origin or 'this template'} has no tokenizer: {{fix}}",
            fix=Fix(
                "load a model directory with a tokenizer.json (chatplate.load('path/to/model')) or give one: "
                "chatplate.load(source, tokenizer='tokenizer.json')",
                "give a model directory with a tokenizer.json (--model path/to/model) or add --tokenizer "
                "tokenizer.json (a file or a model directory)",
            ),
        )
    if isinstance(source, ChatTokenizer):
        return source
    if isinstance(source, (str, PathLike)):
        from pathlib import Path as _Path

        path = _Path(source)
        return ChatTokenizer.from_model_dir(path) if path.is_dir() else ChatTokenizer.from_file(path)
    if type(source).__module__.startswith("tokenizers"):
        return ChatTokenizer(source)
    raise InputError(
        f"tokenizer: expected a tokenizer.json path, a model directory or a tokenizers.Tokenizer, "
        f"got {type(source).__name__}"
    )
