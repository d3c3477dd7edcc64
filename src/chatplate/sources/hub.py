"""Chat templates from the Hugging Face Hub, through ``huggingface_hub`` and its cache.

Only the files a template needs are fetched (never weights): ``tokenizer_config.json``,
``chat_template.jinja``, ``chat_template.json``, ``special_tokens_map.json`` and
``additional_chat_templates/*.jinja``. The snapshot is then read exactly like a local model
directory.

The cache location and offline mode are read from the environment at call time
(``HF_HUB_CACHE``, ``HF_HOME``, ``HF_HUB_OFFLINE``...), not only when ``huggingface_hub`` was
imported, so a change made by the program (or a test) after import is honoured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, SourceError, TemplateNotFoundError
from . import Found
from .model_dir import (
    CHAT_TEMPLATE_DIR,
    CHAT_TEMPLATE_FILE,
    LEGACY_CHAT_TEMPLATE_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    read_model_dir,
)

__all__ = ["read_hub", "fetch_hub_files", "hub_cache_dir", "hub_offline", "HUB_FILES"]

# Where templates can be; the tokenizer files come along for encoding (config.json's model type
# decides, as in transformers, which tokenizer class is built from tokenizer.json).
TEMPLATE_FILES = (
    TOKENIZER_CONFIG_FILE,
    CHAT_TEMPLATE_FILE,
    LEGACY_CHAT_TEMPLATE_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    f"{CHAT_TEMPLATE_DIR}/*.jinja",
)
HUB_FILES = (*TEMPLATE_FILES, "tokenizer.json", "tokenizer.model", "config.json")

_TRUE = {"1", "ON", "YES", "TRUE"}


def read_hub(repo_id: str, *, revision: str | None = None) -> Found:
    """Fetch (or find in the cache) the template files of hub repo ``repo_id`` and read them.

    found = read_hub("HuggingFaceTB/SmolLM2-135M-Instruct")
    found.templates["default"][:30]
    "{% for message in messages %}"
    """
    label = repo_id if revision is None else f"{repo_id}@{revision}"
    snapshot = fetch_hub_files(repo_id, revision=revision)
    origin = f"hub repo {label}"
    if not snapshot.is_dir():
        # Nothing matched: huggingface_hub names the snapshot folder without creating it.
        found = Found(templates={}, origin=origin, source=repo_id)
    else:
        found = read_model_dir(snapshot, origin=origin)
        found.source = repo_id
    found.looked_for = [f"{repo_id}: {name}" for name in TEMPLATE_FILES]
    if not found.templates and hub_offline():
        found.hint = (
            f"HF_HUB_OFFLINE is set, so only the cached snapshot ({snapshot}) was read; it may lack template "
            "files that were never downloaded. Run once with network access (unset HF_HUB_OFFLINE) to fetch them."
        )
    elif not found.templates:
        found.hint = "The repository may hold a base model; instruction-tuned variants usually ship a template."
    return found


def fetch_hub_files(repo_id: str, *, revision: str | None = None) -> Path:
    """Download the template files of ``repo_id`` into the hub cache (or find them there when
    offline) and return the snapshot directory.

    fetch_hub_files("HuggingFaceTB/SmolLM2-135M-Instruct")
    PosixPath('/root/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/...')
    """
    hub = _require_hub()
    from huggingface_hub import errors as hub_errors

    # Newer than the oldest huggingface_hub chatplate supports; an empty tuple matches nothing.
    incomplete_snapshot = getattr(hub_errors, "IncompleteSnapshotError", ())
    cache_dir = hub_cache_dir()
    offline = hub_offline()
    label = repo_id if revision is None else f"{repo_id}@{revision}"
    try:
        folder = hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(HUB_FILES),
            cache_dir=cache_dir,
            local_files_only=offline,
        )
    except hub_errors.GatedRepoError as exc:
        raise SourceError(
            f"hub repo {repo_id} is gated: accept its conditions on the hub, then log in "
            f"(`hf auth login` or HF_TOKEN). ({_first_line(exc)})",
            source=repo_id,
        ) from exc
    except hub_errors.RepositoryNotFoundError as exc:
        raise TemplateNotFoundError(
            f"hub repo {repo_id} was not found. Check the spelling; if it is private, log in "
            "(`hf auth login` or HF_TOKEN).",
            source=repo_id,
            looked_for=[f"hub: {repo_id}"],
        ) from exc
    except hub_errors.RevisionNotFoundError as exc:
        raise TemplateNotFoundError(
            f"hub repo {repo_id} has no revision {revision!r} (a branch, tag or commit hash).",
            source=repo_id,
            looked_for=[f"hub: {label}"],
        ) from exc
    except incomplete_snapshot as exc:
        raise SourceError(
            f"the cached copy of {label} in {cache_dir} is incomplete and the hub cannot be reached: "
            f"run again with network access to complete it. ({_first_line(exc)})",
            source=repo_id,
        ) from exc
    except hub_errors.LocalEntryNotFoundError as exc:
        storage = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
        if offline:
            raise TemplateNotFoundError(
                f"{label} is not in the hub cache ({storage}) and HF_HUB_OFFLINE is set, so it cannot be "
                f"downloaded. Unset HF_HUB_OFFLINE (or run once online) to fetch it, point "
                "HF_HUB_CACHE/HF_HOME at a cache that has it, or load a local directory instead.",
                source=repo_id,
                looked_for=[str(storage)],
            ) from exc
        raise SourceError(
            f"could not reach the hub to fetch {label}, and it is not in the cache ({storage}): check the network "
            f"connection (or HF_ENDPOINT) and try again. ({_first_line(exc)})",
            source=repo_id,
        ) from exc
    except hub_errors.HFValidationError as exc:
        raise TemplateNotFoundError(
            f"{repo_id!r} is not a valid hub repo id: {_first_line(exc)}",
            source=repo_id,
            looked_for=[repo_id],
        ) from exc
    except hub_errors.HfHubHTTPError as exc:
        raise SourceError(f"the hub refused the request for {label}: {_first_line(exc)}", source=repo_id) from exc
    except OSError as exc:
        raise SourceError(f"could not fetch {label} from the hub: {_first_line(exc)}", source=repo_id) from exc
    return Path(folder)


def hub_cache_dir() -> str:
    """The hub cache directory, resolved from the environment now, as ``huggingface_hub`` does
    at import time (``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``/hub,
    ``XDG_CACHE_HOME``/huggingface/hub, ``~/.cache/huggingface/hub``).

    os.environ["HF_HUB_CACHE"] = "/tmp/hub"; hub_cache_dir()
    '/tmp/hub'
    """
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    home = os.path.expandvars(os.path.expanduser(home))
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return os.path.expandvars(os.path.expanduser(cache))


def hub_offline() -> bool:
    """Whether hub downloads are disabled: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) now,
    or as ``huggingface_hub`` saw it when imported.

    os.environ["HF_HUB_OFFLINE"] = "1"; hub_offline()
    True
    """
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value is not None and value.upper() in _TRUE:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _require_hub() -> Any:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingDependencyError(
            "loading templates from the Hugging Face Hub needs the 'huggingface_hub' package: "
            "pip install 'chatplate[hub]'",
            extra="hub",
            package="huggingface_hub",
        ) from exc
    return huggingface_hub


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
