"""``chatplate.load`` resolution, model directories, JSON configs, template files, fallback, save."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import pytest

import chatplate
from chatplate import DefaultTemplateWarning
from chatplate.errors import (
    CorruptSourceError,
    InputError,
    SourceError,
    TemplateNotFoundError,
    UnknownBuiltinError,
)
from chatplate.sources import load, save_templates
from chatplate.sources.model_dir import (
    parse_chat_template,
    read_model_dir,
    special_tokens_from_config,
)
from chatplate.template import ChatTemplate

ECHO = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
TOOLS = "TOOLS{{ tools | length }}{% for m in messages %}|{{ m.content }}{% endfor %}"
TOKENS = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
MSGS = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
TOOL = {
    "type": "function",
    "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    # No test here may reach the network, even by accident through a hub-shaped string.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return path


def write_json(path: Path, data: object) -> Path:
    return write(path, json.dumps(data, indent=2))


# -- strings, files ----------------------------------------------------------------------------


def test_template_string_is_used_directly():
    t = load(ECHO)
    assert isinstance(t, ChatTemplate)
    assert t.templates == {"default": ECHO}
    assert t.render(MSGS) == "[user]Hi[assistant]Yo"


def test_load_is_reexported():
    assert chatplate.load is load


@pytest.mark.parametrize("suffix", [".jinja", ".j2", ".txt", ""])
def test_template_file_any_suffix(tmp_path, suffix):
    path = write(tmp_path / f"tpl{suffix}", ECHO)
    t = load(str(path))
    assert t.templates == {"default": ECHO}
    assert str(path) in t.origin


def test_template_file_pathlike(tmp_path):
    path = write(tmp_path / "tpl.jinja", ECHO)
    assert load(path).render(MSGS) == "[user]Hi[assistant]Yo"


def test_crlf_kept_byte_for_byte_and_renders_like_lf(tmp_path):
    crlf = "{% for m in messages %}\r\n{{ m.content }}\r\n{% endfor %}\r\n"
    path = write(tmp_path / "crlf.jinja", crlf)
    t = load(path)
    assert t.templates["default"] == crlf
    assert t.render(MSGS) == load(crlf.replace("\r\n", "\n")).render(MSGS)


def test_utf8_bom_is_kept_as_transformers_keeps_it(tmp_path):
    # transformers opens templates as "utf-8", not "utf-8-sig": the BOM is template text.
    path = tmp_path / "bom.jinja"
    path.write_bytes(b"\xef\xbb\xbf" + ECHO.encode())
    assert load(path).templates["default"] == "\ufeff" + ECHO


def test_non_utf8_template_file_is_corrupt(tmp_path):
    path = tmp_path / "latin1.jinja"
    path.write_bytes("{{ 'caf\xe9' }}".encode("latin-1"))
    with pytest.raises(CorruptSourceError) as info:
        load(path)
    assert info.value.path == str(path)
    assert "UTF-8" in str(info.value)


def test_missing_path_is_not_found_and_lists_it(tmp_path):
    missing = tmp_path / "nope" / "model"
    with pytest.raises(TemplateNotFoundError) as info:
        load(str(missing))
    assert str(missing) in info.value.looked_for[0]
    assert "no such file" in str(info.value)
    assert not isinstance(info.value, UnknownBuiltinError)


@pytest.mark.parametrize("source", ["./missing-model", "missing.jinja", "~/surely-missing-dir-xyz"])
def test_path_shaped_missing_sources(source):
    with pytest.raises(TemplateNotFoundError) as info:
        load(source)
    assert "no such file or directory" in str(info.value)


def test_missing_pathlike_is_not_found(tmp_path):
    with pytest.raises(TemplateNotFoundError):
        load(tmp_path / "absent.jinja")


def test_fallback_does_not_hide_a_missing_path(tmp_path):
    with pytest.raises(TemplateNotFoundError):
        load(str(tmp_path / "absent"), fallback="chatml")


def test_unknown_name_is_unknown_builtin():
    with pytest.raises(UnknownBuiltinError) as info:
        load("definitely-not-a-template-name")
    assert "not an existing file or directory, a hub id" in str(info.value)
    assert info.value.source == "definitely-not-a-template-name"


def test_misspelt_builtin_gets_suggestions():
    with pytest.raises(UnknownBuiltinError) as info:
        load("chatmll")
    assert "chatml" in info.value.suggestions
    assert "chatml" in str(info.value)


def test_empty_source_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" must not silently mean "the current directory"
    with pytest.raises(InputError, match="empty"):
        load("")


def test_bad_source_type():
    with pytest.raises(InputError):
        load(42)  # type: ignore[arg-type]


def test_revision_only_for_hub_ids(tmp_path):
    path = write(tmp_path / "t.jinja", ECHO)
    with pytest.raises(InputError, match="revision"):
        load(path, revision="main")
    with pytest.raises(InputError, match="revision"):
        load(ECHO, revision="main")


def test_very_long_non_template_string_is_not_an_os_error():
    with pytest.raises(UnknownBuiltinError):
        load("x" * 5000)


# -- built-ins -----------------------------------------------------------------------------------


def test_builtin_by_name():
    t = load("chatml")
    assert "built-in" in t.origin
    out = t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert out.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nHi<|im_end|>\n" in out


def test_builtin_name_selection_default():
    assert load("chatml", name="default").templates == load("chatml").templates
    with pytest.raises(TemplateNotFoundError, match="tool_use"):
        load("chatml", name="tool_use")


def test_existing_path_beats_builtin_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "chatml", ECHO)
    assert load("chatml").templates == {"default": ECHO}


# -- model directories ---------------------------------------------------------------------------


def test_dir_config_string_template_and_tokens(tmp_path):
    write_json(
        tmp_path / "tokenizer_config.json",
        {
            "chat_template": TOKENS,
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False},
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": None,
            "add_bos_token": True,
            "tokenizer_class": "LlamaTokenizer",
        },
    )
    t = load(tmp_path)
    assert t.templates == {"default": TOKENS}
    assert (t.bos_token, t.eos_token) == ("<s>", "</s>")
    assert t.special_tokens == {"unk_token": "<unk>"}
    assert t.render(MSGS) == "<s>Hi</s>Yo</s>"


def test_dir_chat_template_jinja_beats_config_key(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": "OLD", "eos_token": "</s>"})
    write(tmp_path / "chat_template.jinja", ECHO)
    t = load(tmp_path)
    assert t.templates == {"default": ECHO}
    assert t.eos_token == "</s>"


def test_dir_additional_templates_form_a_named_set(tmp_path):
    write(tmp_path / "chat_template.jinja", ECHO)
    write(tmp_path / "additional_chat_templates" / "tool_use.jinja", TOOLS)
    write(tmp_path / "additional_chat_templates" / "rag.jinja", "RAG")
    write(tmp_path / "additional_chat_templates" / "notes.txt", "ignored")
    t = load(tmp_path)
    assert t.templates == {"default": ECHO, "rag": "RAG", "tool_use": TOOLS}
    assert t.render(MSGS) == "[user]Hi[assistant]Yo"
    assert t.render(MSGS, tools=[TOOL]) == "TOOLS1|Hi|Yo"


def test_dir_additional_templates_alone_replace_the_config_key(tmp_path):
    # transformers: any template file makes the config's chat_template irrelevant, even without
    # chat_template.jinja; the set then has no default.
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": "FROM CONFIG"})
    write(tmp_path / "additional_chat_templates" / "tool_use.jinja", TOOLS)
    t = load(tmp_path)
    assert t.templates == {"tool_use": TOOLS}
    assert t.render(MSGS, tools=[TOOL]) == "TOOLS1|Hi|Yo"
    with pytest.raises(TemplateNotFoundError, match="default"):
        t.render(MSGS)


def test_dir_config_list_of_named_templates(tmp_path):
    write_json(
        tmp_path / "tokenizer_config.json",
        {"chat_template": [{"name": "default", "template": ECHO}, {"name": "tool_use", "template": TOOLS}]},
    )
    t = load(tmp_path)
    assert t.templates == {"default": ECHO, "tool_use": TOOLS}
    picked = load(tmp_path, name="tool_use")
    assert picked.templates == {"default": TOOLS}
    assert "[tool_use]" in picked.origin


def test_name_not_present_lists_available(tmp_path):
    write_json(
        tmp_path / "tokenizer_config.json",
        {"chat_template": [{"name": "default", "template": ECHO}, {"name": "rag", "template": "R"}]},
    )
    with pytest.raises(TemplateNotFoundError) as info:
        load(tmp_path, name="tool_use")
    assert "default, rag" in str(info.value)
    assert info.value.looked_for == ["tool_use"]


def test_dir_config_object_of_templates_is_accepted_like_transformers(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": {"default": ECHO, "rag": "R"}})
    assert load(tmp_path).templates == {"default": ECHO, "rag": "R"}


def test_dir_legacy_chat_template_json_used_last(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"eos_token": "</s>"})
    write_json(tmp_path / "chat_template.json", {"chat_template": ECHO})
    t = load(tmp_path)
    assert t.templates == {"default": ECHO}
    assert t.eos_token == "</s>"
    # ...and only last: the config key wins over it.
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": TOKENS})
    assert load(tmp_path).templates == {"default": TOKENS}


def test_dir_null_chat_template_key_means_none(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": None})
    with pytest.raises(TemplateNotFoundError):
        load(tmp_path)


def test_dir_default_jinja_in_additional_overrides_main_file(tmp_path):
    # Read after chat_template.jinja by transformers, so it wins there too.
    write(tmp_path / "chat_template.jinja", "MAIN")
    write(tmp_path / "additional_chat_templates" / "default.jinja", "EXTRA")
    assert load(tmp_path).templates == {"default": "EXTRA"}


def test_special_tokens_map_fills_and_overrides_when_no_added_tokens_decoder(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": TOKENS, "eos_token": "</s>"})
    write_json(
        tmp_path / "special_tokens_map.json",
        {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "<eos>", "pad_token": "<pad>"},
    )
    t = load(tmp_path)
    assert (t.bos_token, t.eos_token) == ("<s>", "<eos>")
    assert t.special_tokens == {"pad_token": "<pad>"}


def test_special_tokens_map_ignored_when_config_has_added_tokens_decoder(tmp_path):
    write_json(
        tmp_path / "tokenizer_config.json",
        {"chat_template": TOKENS, "eos_token": "</s>", "added_tokens_decoder": {}},
    )
    write_json(tmp_path / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "<eos>"})
    t = load(tmp_path)
    assert (t.bos_token, t.eos_token) == (None, "</s>")


def test_model_specific_special_tokens():
    config = {
        "bos_token": "<s>",
        "image_token": "<image>",
        "boi_token": {"__type": "AddedToken", "content": "<boi>"},
        "odd_token": {"content": "<untagged>"},  # untagged objects are not tokens outside the named ones
        "add_eos_token": False,
        "extra_special_tokens": {"audio_token": "<audio>"},
        "split_special_tokens": False,
    }
    bos, eos, others = special_tokens_from_config(config, Path("x"))
    assert (bos, eos) == ("<s>", None)
    assert others == {"image_token": "<image>", "boi_token": "<boi>", "audio_token": "<audio>"}


def test_special_tokens_reach_the_template(tmp_path):
    write_json(
        tmp_path / "tokenizer_config.json",
        {
            "chat_template": "{{ unk_token }}|{{ image_token }}|{{ messages[0].content }}",
            "unk_token": "<unk>",
            "image_token": "<img>",
        },
    )
    assert load(tmp_path).render(MSGS) == "<unk>|<img>|Hi"


def test_bad_named_special_token_type_is_corrupt(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": ECHO, "bos_token": 1})
    with pytest.raises(CorruptSourceError, match="bos_token"):
        load(tmp_path)


# -- not found, fallback ---------------------------------------------------------------------------


def test_dir_without_template_lists_everything_looked_for(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"eos_token": "</s>"})
    with pytest.raises(TemplateNotFoundError) as info:
        load(tmp_path)
    error = info.value
    looked = "\n".join(error.looked_for)
    for name in ("chat_template.jinja", "additional_chat_templates", "tokenizer_config.json", "chat_template.json"):
        assert name in looked
        assert name in str(error)
    assert "chatplate.load('chatml')" in str(error)
    assert "--template chatml" in error.for_cli() and "--fallback chatml" in error.for_cli()
    assert "chatplate.load" not in error.for_cli()
    assert "fallback=" in str(error)
    assert pickle.loads(pickle.dumps(error)).looked_for == error.looked_for


def test_empty_dir_hint_mentions_missing_config(tmp_path):
    with pytest.raises(TemplateNotFoundError, match="no tokenizer_config.json"):
        load(tmp_path)


def test_dir_with_gguf_hints_at_it(tmp_path):
    (tmp_path / "model.Q4.gguf").write_bytes(b"GGUF")
    with pytest.raises(TemplateNotFoundError, match=r"model\.Q4\.gguf"):
        load(tmp_path)


def test_fallback_builtin_with_warning_and_model_tokens(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {"eos_token": "</s>", "pad_token": "<pad>"})
    with pytest.warns(DefaultTemplateWarning) as record:
        t = load(tmp_path, fallback="chatml")
    message = str(record[0].message)
    assert "chat_template.jinja" in message and "chatml" in message
    assert issubclass(DefaultTemplateWarning, UserWarning)
    assert t.templates == load("chatml").templates
    assert t.eos_token == "</s>"
    assert t.special_tokens == {"pad_token": "<pad>"}
    assert "<|im_start|>user\nHi<|im_end|>" in t.render(MSGS)


def test_fallback_not_used_when_a_template_exists(tmp_path):
    write(tmp_path / "chat_template.jinja", ECHO)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(tmp_path, fallback="chatml").templates == {"default": ECHO}


def test_fallback_can_be_a_chat_template(tmp_path):
    write_json(tmp_path / "tokenizer_config.json", {})
    with pytest.warns(DefaultTemplateWarning):
        t = load(tmp_path, fallback=ChatTemplate(ECHO, origin="mine"))
    assert t.render(MSGS) == "[user]Hi[assistant]Yo"


def test_misspelt_fallback_fails_even_when_unused(tmp_path):
    write(tmp_path / "chat_template.jinja", ECHO)
    with pytest.raises(UnknownBuiltinError):
        load(tmp_path, fallback="chatmll")


# -- corrupt files ---------------------------------------------------------------------------------


def test_corrupt_config_reports_path_line_and_column(tmp_path):
    path = write(
        tmp_path / "tokenizer_config.json", '{\n  "eos_token": "</s>",\n  "chat_template": "x"\n  "oops": 1\n}'
    )
    with pytest.raises(CorruptSourceError) as info:
        load(tmp_path)
    assert info.value.path == str(path)
    assert "line 4" in str(info.value) and "column 3" in str(info.value)
    assert isinstance(info.value, SourceError)


def test_truncated_config_is_corrupt(tmp_path):
    write(tmp_path / "tokenizer_config.json", '{"chat_template": "{{ messa')
    with pytest.raises(CorruptSourceError, match="not valid JSON"):
        load(tmp_path)


def test_config_that_is_not_an_object(tmp_path):
    write(tmp_path / "tokenizer_config.json", "[1, 2]")
    with pytest.raises(CorruptSourceError, match="a list"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        (42, "a number"),
        (True, "a boolean"),
        (["{{ x }}"], "entry [0] is a string"),
        ([{"name": "a"}], "not an object with 'name' and 'template'"),
        ([{"name": "a", "template": 3}], "'template' that is a number"),
        ([], "empty list"),
    ],
)
def test_chat_template_of_wrong_type(tmp_path, value, found):
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": value})
    with pytest.raises(CorruptSourceError) as info:
        load(tmp_path)
    assert found in str(info.value)
    assert "list of" in str(info.value)


def test_parse_chat_template_list_order_kept():
    value = [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
    assert list(parse_chat_template(value, Path("x"))) == ["tool_use", "default"]


def test_non_utf8_config_is_corrupt(tmp_path):
    (tmp_path / "tokenizer_config.json").write_bytes(b'{"eos_token": "\xff"}')
    with pytest.raises(CorruptSourceError, match="UTF-8"):
        load(tmp_path)


# -- JSON files given directly ---------------------------------------------------------------------


def test_tokenizer_config_file_directly(tmp_path):
    path = write_json(
        tmp_path / "tokenizer_config.json", {"chat_template": TOKENS, "bos_token": "<s>", "eos_token": "</s>"}
    )
    t = load(path)
    assert t.render(MSGS) == "<s>Hi</s>Yo</s>"


def test_any_named_json_tokenizer_config(tmp_path):
    path = write_json(tmp_path / "my-config.json", {"chat_template": ECHO})
    assert load(str(path)).templates == {"default": ECHO}


def test_chat_template_json_file_directly(tmp_path):
    path = write_json(tmp_path / "chat_template.json", {"chat_template": ECHO})
    assert load(path).templates == {"default": ECHO}


def test_config_file_without_key_points_at_sibling_templates(tmp_path):
    path = write_json(tmp_path / "tokenizer_config.json", {"eos_token": "</s>"})
    write(tmp_path / "chat_template.jinja", ECHO)
    with pytest.raises(TemplateNotFoundError, match="load the directory"):
        load(path)


def test_json_that_is_not_a_tokenizer_config(tmp_path):
    path = write_json(tmp_path / "data.json", {"messages": []})
    with pytest.raises(CorruptSourceError, match="neither a tokenizer_config.json"):
        load(path)


def test_tokenizer_config_without_template_can_fall_back(tmp_path):
    path = write_json(tmp_path / "tokenizer_config.json", {"tokenizer_class": "X", "eos_token": "</s>"})
    with pytest.warns(DefaultTemplateWarning):
        t = load(path, fallback="chatml")
    assert t.eos_token == "</s>"


# -- ChatTemplate and mappings ---------------------------------------------------------------------


def test_chat_template_passes_through_and_name_selects():
    t = ChatTemplate({"default": ECHO, "tool_use": TOOLS}, bos_token="<s>", origin="here")
    assert load(t) is t
    picked = load(t, name="tool_use")
    assert picked.templates == {"default": TOOLS}
    assert picked.bos_token == "<s>"


def test_mapping_source():
    t = load({"default": ECHO, "rag": "R"})
    assert t.templates == {"default": ECHO, "rag": "R"}


def test_read_model_dir_reader_level(tmp_path):
    write(tmp_path / "chat_template.jinja", ECHO)
    found = read_model_dir(tmp_path)
    assert found.templates == {"default": ECHO}
    assert found.source == str(tmp_path)


# -- save ------------------------------------------------------------------------------------------


def test_save_single_template_removes_config_key_keeps_rest(tmp_path):
    config = {"tokenizer_class": "X", "chat_template": "OLD", "eos_token": "</s>", "name_or_path": "ü"}
    write_json(tmp_path / "tokenizer_config.json", config)
    written = save_templates(ChatTemplate(ECHO), tmp_path)
    assert written == [tmp_path / "chat_template.jinja"]
    assert (tmp_path / "chat_template.jinja").read_text(encoding="utf-8") == ECHO
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert saved == {"tokenizer_class": "X", "eos_token": "</s>", "name_or_path": "ü"}
    assert list(saved) == ["tokenizer_class", "eos_token", "name_or_path"]
    assert load(tmp_path).templates == {"default": ECHO}


def test_save_via_chat_template_method(tmp_path):
    written = ChatTemplate(ECHO).save(tmp_path / "new" / "dir")
    assert written == [tmp_path / "new" / "dir" / "chat_template.jinja"]
    assert load(tmp_path / "new" / "dir").templates == {"default": ECHO}


def test_save_without_config_creates_none(tmp_path):
    save_templates(ChatTemplate(ECHO), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat_template.jinja"]


def test_save_config_without_key_is_untouched(tmp_path):
    raw = '{"eos_token":   "</s>"}'
    write(tmp_path / "tokenizer_config.json", raw)
    save_templates(ChatTemplate(ECHO), tmp_path)
    assert (tmp_path / "tokenizer_config.json").read_text() == raw


def test_save_keeps_crlf_bytes(tmp_path):
    crlf = "{% for m in messages %}\r\n{{ m.content }}\r\n{% endfor %}"
    save_templates(ChatTemplate({"default": crlf, "tool_use": crlf + "\r\n"}), tmp_path)
    assert (tmp_path / "chat_template.jinja").read_bytes() == crlf.encode()
    assert (tmp_path / "additional_chat_templates" / "tool_use.jinja").read_bytes() == (crlf + "\r\n").encode()
    assert load(tmp_path).templates == {"default": crlf, "tool_use": crlf + "\r\n"}


def test_save_named_set_and_stale_files_removed(tmp_path):
    save_templates(ChatTemplate({"default": ECHO, "tool_use": TOOLS, "rag": "R"}), tmp_path)
    written = save_templates(ChatTemplate({"default": ECHO, "tool_use": TOOLS}), tmp_path)
    assert written == [tmp_path / "chat_template.jinja", tmp_path / "additional_chat_templates" / "tool_use.jinja"]
    assert load(tmp_path).templates == {"default": ECHO, "tool_use": TOOLS}
    save_templates(ChatTemplate(ECHO), tmp_path)
    assert not (tmp_path / "additional_chat_templates").exists()
    assert load(tmp_path).templates == {"default": ECHO}


def test_save_set_without_default_removes_old_main_file(tmp_path):
    write(tmp_path / "chat_template.jinja", "OLD")
    save_templates(ChatTemplate({"tool_use": TOOLS}), tmp_path)
    assert not (tmp_path / "chat_template.jinja").exists()
    assert load(tmp_path).templates == {"tool_use": TOOLS}


def test_save_keeps_unrelated_files_in_template_dir(tmp_path):
    write(tmp_path / "additional_chat_templates" / "README.md", "notes")
    save_templates(ChatTemplate({"default": ECHO, "rag": "R"}), tmp_path)
    save_templates(ChatTemplate(ECHO), tmp_path)
    assert (tmp_path / "additional_chat_templates" / "README.md").read_text() == "notes"


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".", "", "a\\b", "x\0y"])
def test_save_rejects_names_that_escape(tmp_path, name):
    target = tmp_path / "out"
    with pytest.raises(InputError, match="template name"):
        save_templates(ChatTemplate({"default": ECHO, name: "X"}), target)
    assert not target.exists()
    assert not (tmp_path / "escape.jinja").exists()


def test_save_with_corrupt_config_writes_nothing(tmp_path):
    write(tmp_path / "tokenizer_config.json", "{broken")
    with pytest.raises(CorruptSourceError):
        save_templates(ChatTemplate(ECHO), tmp_path)
    assert not (tmp_path / "chat_template.jinja").exists()


def test_save_into_a_file_path_fails(tmp_path):
    path = write(tmp_path / "file", "x")
    with pytest.raises(InputError):
        save_templates(ChatTemplate(ECHO), path)


def test_save_warns_about_legacy_processor_file(tmp_path):
    write_json(tmp_path / "chat_template.json", {"chat_template": "OLD"})
    with pytest.warns(UserWarning, match="chat_template.json"):
        save_templates(ChatTemplate(ECHO), tmp_path)
    assert load(tmp_path).templates == {"default": ECHO}


def test_saved_files_get_normal_permissions(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    save_templates(ChatTemplate(ECHO), tmp_path)
    mode = (tmp_path / "chat_template.jinja").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
