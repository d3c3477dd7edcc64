"""``--engine ray`` on a local Ray instance gives the same Parquet and the same rejected rows as
the local engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import chatplate
from tests import tokenizer_fixtures
from tests.unit.test_prepare import BAD, GOOD, write_jsonl

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")


def test_ray_engine_matches_the_local_engine(tmp_path: Path) -> None:
    template = chatplate.load(str(tokenizer_fixtures.chatml_bpe_dir()))
    rows = (GOOD + [BAD["bad_role"], BAD["no_trained_tokens"]]) * 6
    source = write_jsonl(tmp_path / "in.jsonl", rows, ["{broken"])
    local = chatplate.prepare(source, tmp_path / "local.parquet", template, workers=1, chunk_rows=5)
    on_ray = chatplate.prepare(source, tmp_path / "ray.parquet", template, engine="ray", workers=2, chunk_rows=5)
    assert pq.read_table(tmp_path / "ray.parquet").equals(pq.read_table(tmp_path / "local.parquet"))
    assert (on_ray.rows_read, on_ray.rows_written, on_ray.rejected) == (local.rows_read, local.rows_written, local.rejected)
    assert on_ray.rows_read == len(rows) + 1
    read = lambda name: [json.loads(line) for line in (tmp_path / name).read_text(encoding="utf-8").splitlines()]  # noqa: E731
    assert read("ray.parquet.errors.jsonl") == read("local.parquet.errors.jsonl")
