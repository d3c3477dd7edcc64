"""Hub sources, offline: each test lays out its own hub cache and never touches the network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

from chatplate import DefaultTemplateWarning, load  # noqa: E402
from chatplate.errors import MissingDependencyError, SourceError, TemplateNotFoundError  # noqa: E402
from chatplate.sources import hub as hub_source  # noqa: E402
from chatplate.sources.hub import HUB_FILES, hub_cache_dir, hub_offline  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
OLD_SHA = "fedcba9876543210fedcba9876543210fedcba98"
DEFAULT = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
TOOLS = "T{{ tools | length }}{% for m in messages %}{{ m.content }}{% endfor %}"
MSGS = [{"role": "user", "content": "Hi"}]


def lay_out(
    cache: Path, repo_id: str, files: dict[str, str], *, sha: str = SHA, refs: tuple[str, ...] = ("main",)
) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/<ref>, snapshots/<sha>/...}."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / sha
    for name, text in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    snapshot.mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (storage / "refs" / ref).write_text(sha)
    return snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    # The test must fail loudly rather than reach the network if offline mode were not honoured.
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", no_network)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", no_network)
    monkeypatch.chdir(tmp_path)  # so "org/name" is not accidentally a local directory
    return cache


def config(**extra: object) -> str:
    return json.dumps({"bos_token": "<s>", "eos_token": "</s>", **extra})


def test_load_hub_id_from_cache(cache):
    lay_out(
        cache,
        "acme/tiny-chat",
        {
            "tokenizer_config.json": config(chat_template="OLD"),
            "chat_template.jinja": DEFAULT,
            "additional_chat_templates/tool_use.jinja": TOOLS,
        },
    )
    t = load("acme/tiny-chat")
    assert t.templates == {"default": DEFAULT, "tool_use": TOOLS}
    assert (t.bos_token, t.eos_token) == ("<s>", "</s>")
    assert t.render(MSGS) == "<s>Hi</s>"
    assert "hub repo acme/tiny-chat" in t.origin


def test_config_key_template_from_cache(cache):
    lay_out(cache, "acme/legacy", {"tokenizer_config.json": config(chat_template=DEFAULT)})
    assert load("acme/legacy").render(MSGS) == "<s>Hi</s>"


def test_revision_by_ref_and_by_commit(cache):
    lay_out(cache, "acme/tiny-chat", {"chat_template.jinja": "NEW"}, sha=SHA)
    lay_out(cache, "acme/tiny-chat", {"chat_template.jinja": "OLD"}, sha=OLD_SHA, refs=("v1",))
    assert load("acme/tiny-chat").templates == {"default": "NEW"}
    assert load("acme/tiny-chat", revision="v1").templates == {"default": "OLD"}
    assert load("acme/tiny-chat", revision=OLD_SHA).templates == {"default": "OLD"}
    assert "@v1" in load("acme/tiny-chat", revision="v1").origin


def test_hf_home_is_read_at_call_time(tmp_path, monkeypatch, cache):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == str(tmp_path / "home" / "hub")
    lay_out(tmp_path / "home" / "hub", "acme/via-home", {"chat_template.jinja": "HOME"})
    assert load("acme/via-home").templates == {"default": "HOME"}


def test_offline_flag_read_at_call_time(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert hub_offline()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert not hub_offline()


def test_offline_and_not_cached(cache):
    with pytest.raises(TemplateNotFoundError) as info:
        load("acme/not-cached")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message
    assert str(cache) in message
    assert message.startswith("acme/not-cached: no such local file or directory")
    assert info.value.looked_for[0].endswith("acme/not-cached")
    assert info.value.source == "acme/not-cached"


def test_offline_unknown_revision_not_cached(cache):
    lay_out(cache, "acme/tiny-chat", {"chat_template.jinja": "X"})
    with pytest.raises(TemplateNotFoundError, match="HF_HUB_OFFLINE"):
        load("acme/tiny-chat", revision="v9")


def test_cached_snapshot_without_template(cache):
    lay_out(cache, "acme/base", {"tokenizer_config.json": config()})
    with pytest.raises(TemplateNotFoundError) as info:
        load("acme/base")
    message = str(info.value)
    assert "acme/base: chat_template.jinja" in message
    assert "HF_HUB_OFFLINE" in message  # the cached snapshot may simply lack the files
    with pytest.warns(DefaultTemplateWarning):
        t = load("acme/base", fallback="chatml")
    assert t.eos_token == "</s>"


def test_incomplete_snapshot_is_reported(cache):
    snapshot = lay_out(cache, "acme/partial", {"tokenizer_config.json": config()})
    trees = snapshot.parent.parent / "trees"
    trees.mkdir()
    listing = {
        "format_version": 1,
        "files": {
            "tokenizer_config.json": {"size": 10, "blob_id": "a" * 40},
            "chat_template.jinja": {"size": 10, "blob_id": "b" * 40},
        },
    }
    (trees / f"{SHA}.json").write_text(json.dumps(listing))
    tree_cache = pytest.importorskip("huggingface_hub._tree_cache")
    if tree_cache.read_tree_cache(str(snapshot.parent.parent), SHA) is None:
        pytest.skip("this huggingface_hub does not read the tree listing written here")
    with pytest.raises(SourceError, match="incomplete"):
        load("acme/partial")


def test_online_fetch_asks_only_for_template_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    monkeypatch.chdir(tmp_path)
    snapshot = lay_out(tmp_path / "c", "acme/online", {"chat_template.jinja": DEFAULT})
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    t = load("acme/online", revision="main")
    assert t.templates == {"default": DEFAULT}
    ((repo_id, kwargs),) = calls
    assert repo_id == "acme/online"
    assert kwargs["revision"] == "main"
    assert kwargs["local_files_only"] is False
    assert kwargs["cache_dir"] == str(tmp_path / "c")
    assert sorted(kwargs["allow_patterns"]) == sorted(HUB_FILES)
    assert not any("safetensors" in p or p == "*" for p in kwargs["allow_patterns"])


def _http_error(cls, message):
    import httpx2

    response = httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/api/models/x"))
    return cls(message, response=response)


@pytest.mark.parametrize(
    ("error", "expected_type", "expected_text"),
    [
        ("RepositoryNotFoundError", TemplateNotFoundError, "was not found"),
        ("GatedRepoError", SourceError, "gated"),
        ("RevisionNotFoundError", TemplateNotFoundError, "no revision"),
    ],
)
def test_hub_errors_are_translated(tmp_path, monkeypatch, error, expected_type, expected_text):
    pytest.importorskip("httpx2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)
    cls = getattr(huggingface_hub.errors, error)

    def failing(repo_id, **kwargs):
        raise _http_error(cls, "404 Client Error")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(expected_type) as info:
        load("acme/missing", revision="v2")
    assert expected_text in str(info.value)
    assert info.value.source == "acme/missing"


def test_connection_problem_when_online(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)

    def failing(repo_id, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("An error happened ... check your internet connection")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(SourceError, match="could not reach the hub") as info:
        load("acme/anything")
    assert not isinstance(info.value, TemplateNotFoundError)


def test_missing_huggingface_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingDependencyError) as info:
        load("acme/tiny-chat")
    assert info.value.extra == "hub"
    assert "chatplate[hub]" in str(info.value)


def test_local_directory_shaped_like_hub_id_wins(tmp_path, monkeypatch, cache):
    local = tmp_path / "acme" / "tiny-chat"
    local.mkdir(parents=True)
    (local / "chat_template.jinja").write_text("LOCAL")
    lay_out(cache, "acme/tiny-chat", {"chat_template.jinja": "HUB"})
    assert load("acme/tiny-chat").templates == {"default": "LOCAL"}


def test_hub_module_does_not_import_hub_eagerly():
    assert hasattr(hub_source, "read_hub")
    source = Path(hub_source.__file__).read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not any("huggingface_hub" in line for line in top_level)


def test_hub_id_brings_its_tokenizer(cache):
    from tests import tokenizer_fixtures

    model = tokenizer_fixtures.chatml_bpe_dir()
    files = {name: (model / name).read_text(encoding="utf-8") for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")}
    lay_out(cache, "acme/tiny-tok", files)
    from_hub = load("acme/tiny-tok")
    local = load(str(model))
    messages = [{"role": "user", "content": "Hello <|im_end|> there"}]
    assert from_hub.encode(messages, add_generation_prompt=True).input_ids == local.encode(
        messages, add_generation_prompt=True
    ).input_ids
    assert from_hub.tokenizer.pad_token == local.tokenizer.pad_token == "<|endoftext|>"


def test_a_mistyped_local_path_says_no_such_path_before_the_hub(tmp_path, monkeypatch):
    # Online, with the hub unreachable (a closed local port): "org/name" is also how a relative
    # path looks, so the first thing to say is that the path does not exist.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(SourceError) as info:
        load("models/llama31-mv")
    message = str(info.value)
    assert message.startswith(f"models/llama31-mv: no such local file or directory ({tmp_path / 'models' / 'llama31-mv'})")
    assert "tried as a hub id" in message and "could not reach the hub" in message
    assert isinstance(info.value.__cause__, SourceError)
