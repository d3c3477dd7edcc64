"""Dataset preparation: formats, inputs and outputs, order, rejected rows, workers, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import chatplate
from chatplate.training import REASONS, detect_format, to_example
from tests import tokenizer_fixtures

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

GOOD = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"}]},
    {"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}]},
    [["u1", "a1"], ["u2", "a2"]],
    {"instruction": "Add", "input": "2 and 2", "output": "4"},
    {"prompt": "p", "completion": "c"},
    {"messages": [{"role": "user", "content": "call"}, {"role": "assistant", "content": "ok"}],
     "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}]},
]
# One record per rejection reason, each with what makes it fail.
BAD = {
    "unknown_format": {"foo": 1},
    "bad_record": {"conversations": [{"from": "human"}]},
    "bad_role": {"conversations": [{"from": "alien", "value": "q"}]},
    "template_error": {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                    {"role": "assistant", "content": "c"}]},
    "too_long": {"messages": [{"role": "user", "content": "x " * 400}, {"role": "assistant", "content": "y"}]},
    "no_trained_tokens": {"messages": [{"role": "user", "content": "only a question"}]},
}


@pytest.fixture(scope="module")
def template() -> chatplate.ChatTemplate:
    pytest.importorskip("mistral_common")
    # Mistral v1's template raises on non-alternating roles: the template_error row.
    return chatplate.load(str(tokenizer_fixtures.mistral_v1_dir()))


@pytest.fixture(scope="module")
def chatml() -> chatplate.ChatTemplate:
    return chatplate.load(str(tokenizer_fixtures.chatml_bpe_dir()))


def write_jsonl(path: Path, rows: list[Any], extra_lines: list[str] = ()) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def test_formats_become_conversations() -> None:
    assert [detect_format(r) for r in GOOD] == ["openai", "sharegpt", "pairs", "alpaca", "prompt_completion", "openai"]
    assert to_example(GOOD[1]).messages == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    assert to_example(GOOD[2]).messages[2:] == [{"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]
    assert to_example(GOOD[3]).messages[0] == {"role": "user", "content": "Add\n\n2 and 2"}
    assert to_example(GOOD[5]).tools == GOOD[5]["tools"]
    sharegpt = {"system": "S", "tools": json.dumps(GOOD[5]["tools"]), "conversations": [
        {"from": "human", "value": "weather?"},
        {"from": "function_call", "value": json.dumps({"name": "f", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": "sunny"},
        {"from": "gpt", "value": "It is sunny.", "weight": 0},
    ]}
    messages = to_example(sharegpt).messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["tool_calls"][0]["function"] == {"name": "f", "arguments": {"city": "Paris"}}
    assert messages[4] == {"role": "assistant", "content": "It is sunny.", "train": False}
    assert to_example(sharegpt).tools == GOOD[5]["tools"]
    openai_style = {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert to_example(openai_style).messages == openai_style["conversations"]
    alpaca = {"instruction": "And 3+3?", "output": "6", "history": [["2+2?", "4"]]}
    assert [m["content"] for m in to_example(alpaca).messages] == ["2+2?", "4", "And 3+3?", "6"]
    with pytest.raises(chatplate.RecordError) as info:
        to_example({"messages": [{"role": "wizard", "content": "x"}]})
    assert info.value.reason == "bad_role" and "messages[0].role" in str(info.value)
    with pytest.raises(chatplate.RecordError, match="alpaca"):
        to_example([1, 2], "alpaca")


def test_every_rejection_reason_is_reported_and_counts_add_up(tmp_path: Path, template: chatplate.ChatTemplate) -> None:
    rows = [GOOD[0], *BAD.values(), GOOD[3]]
    source = write_jsonl(tmp_path / "in.jsonl", rows, ["{not json"])
    out = tmp_path / "out.parquet"
    summary = chatplate.prepare(source, out, template, max_length=200, workers=1, chunk_rows=3)
    entries = [json.loads(line) for line in (tmp_path / "out.parquet.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = {**{reason: index + 1 for index, reason in enumerate(BAD)}, "bad_json": len(rows)}
    assert {e["reason"]: e["row"] for e in entries} == expected
    assert set(summary.rejected) == set(REASONS) - {"mask_error"} and set(summary.rejected.values()) == {1}
    assert summary.rows_read == len(rows) + 1 == summary.rows_written + summary.rows_rejected
    assert entries[0]["record"] == BAD["unknown_format"]
    # JSONL rows also say their 1-based line; a line that is not JSON keeps its raw text.
    assert [e["line"] for e in entries] == [e["row"] + 1 for e in entries]
    assert entries[-1]["record"] == "{not json"
    table = pq.read_table(out)
    assert table.column_names == ["input_ids", "attention_mask", "labels", "n_tokens", "n_trained"]
    assert table.num_rows == summary.rows_written == 2
    assert summary.tokens == sum(table.column("n_tokens").to_pylist())
    assert "rejected by reason" in str(summary)
    with pytest.raises(chatplate.RecordError) as info:
        chatplate.prepare(source, tmp_path / "stop.parquet", template, max_length=200, workers=1, on_error="fail")
    assert (info.value.row, info.value.line, info.value.reason) == (1, 2, "unknown_format")
    assert "line 2 (row 1)" in str(info.value)


def test_rows_match_encode_and_keep_input_order(tmp_path: Path, chatml: chatplate.ChatTemplate) -> None:
    rows = GOOD * 7
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = chatplate.prepare(source, tmp_path / "out.parquet", chatml, workers=1, chunk_rows=4)
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert summary.rows_written == len(rows) == len(table)
    for record, row in zip(rows, table):
        example = to_example(record)
        enc = chatml.encode(example.messages, tools=example.tools, return_assistant_mask=True)
        assert row["input_ids"] == enc.input_ids and row["labels"] == enc.labels
        assert row["n_trained"] == sum(enc.assistant_mask) > 0 and row["attention_mask"] == [1] * len(enc.input_ids)


def test_workers_give_the_same_output(tmp_path: Path, chatml: chatplate.ChatTemplate) -> None:
    rows = GOOD * 20 + [BAD["bad_role"]] * 3
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    one = chatplate.prepare(source, tmp_path / "one.parquet", chatml, workers=1, chunk_rows=8)
    two = chatplate.prepare(source, tmp_path / "two.parquet", chatml, workers=2, chunk_rows=8)
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "two.parquet"))
    assert (one.rows_written, one.rejected) == (two.rows_written, two.rejected)


def test_truncation_policies(tmp_path: Path, chatml: chatplate.ChatTemplate) -> None:
    long_chat = {"messages": [{"role": "user", "content": "first " * 50}, {"role": "assistant", "content": "one"},
                              {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"}]}
    source = write_jsonl(tmp_path / "in.jsonl", [long_chat])
    full = len(chatml.encode(long_chat["messages"]).input_ids)
    cut = chatplate.prepare(source, tmp_path / "t.jsonl", chatml, max_length=full - 5, truncation="tokens", workers=1)
    row = json.loads((tmp_path / "t.jsonl").read_text(encoding="utf-8"))
    assert cut.rows_written == 1 and row["n_tokens"] == full - 5 and len(row["labels"]) == full - 5
    chatplate.prepare(source, tmp_path / "turns.jsonl", chatml, max_length=full - 5, truncation="turns", workers=1)
    row = json.loads((tmp_path / "turns.jsonl").read_text(encoding="utf-8"))
    assert row["n_tokens"] < full - 5 and row["n_trained"] > 0
    dropped = chatplate.prepare(source, tmp_path / "d.jsonl", chatml, max_length=full - 5, workers=1)
    assert dropped.rejected == Counter({"too_long": 1})


def test_parquet_and_dataset_inputs_and_outputs(tmp_path: Path, chatml: chatplate.ChatTemplate) -> None:
    datasets = pytest.importorskip("datasets")
    # The record with tools first: pyarrow takes the schema from the first row.
    records = sorted((r for r in GOOD if isinstance(r, dict) and "messages" in r), key=lambda r: "tools" not in r) * 5
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "in.parquet", row_group_size=3)
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "in_ds"))
    write_jsonl(tmp_path / "in.jsonl", records)
    (tmp_path / "in.json").write_text(json.dumps(records), encoding="utf-8")
    reference = None
    for name in ("in.jsonl", "in.json", "in.parquet", "in_ds"):
        summary = chatplate.prepare(tmp_path / name, tmp_path / f"{name}.out.parquet", chatml, workers=1, chunk_rows=4)
        table = pq.read_table(tmp_path / f"{name}.out.parquet")
        reference = reference or table
        assert summary.rows_written == len(records) and table.equals(reference), name
    chatplate.prepare(tmp_path / "in.jsonl", tmp_path / "out_ds", chatml, workers=1)
    saved = datasets.load_from_disk(str(tmp_path / "out_ds"))
    assert saved.to_list() == reference.to_pylist()


def test_prepare_dataset_maps_a_dataset(tmp_path: Path, chatml: chatplate.ChatTemplate) -> None:
    datasets = pytest.importorskip("datasets")
    records = [{"messages": r["messages"]} for r in GOOD if isinstance(r, dict) and "messages" in r] * 3
    records.insert(2, {"messages": [{"role": "user", "content": "no answer"}]})
    dataset = datasets.Dataset.from_list(records)
    with pytest.warns(chatplate.RejectedRowsWarning, match="no_trained_tokens 1"):
        out = chatplate.prepare_dataset(dataset, chatml, errors=tmp_path / "errors.jsonl")
    assert len(out) == len(records) - 1
    assert json.loads((tmp_path / "errors.jsonl").read_text(encoding="utf-8"))["row"] == 2
    first = chatml.encode(records[0]["messages"], return_assistant_mask=True)
    assert out[0]["input_ids"] == first.input_ids and out[0]["labels"] == first.labels


def test_bad_arguments(tmp_path: Path, chatml: chatplate.ChatTemplate) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    with pytest.raises(chatplate.InputError, match="truncation"):
        chatplate.prepare(source, tmp_path / "o.parquet", chatml, truncation="middle")
    with pytest.raises(chatplate.InputError, match="max_length"):
        chatplate.prepare(source, tmp_path / "o.parquet", chatml, truncation="turns")
    with pytest.raises(chatplate.InputError, match="output format"):
        chatplate.prepare(source, tmp_path / "o.csv", chatml)
    with pytest.raises(chatplate.SourceError, match="not found"):
        chatplate.prepare(tmp_path / "missing.jsonl", tmp_path / "o.parquet", chatml)
    with pytest.raises(chatplate.InputError, match="format"):
        chatplate.prepare(source, tmp_path / "o.parquet", chatml, format="csv")


def test_cli_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("typer")
    from chatplate.cli import main

    source = write_jsonl(tmp_path / "in.jsonl", [*GOOD, BAD["bad_role"]])
    model = str(tokenizer_fixtures.chatml_bpe_dir())
    assert main(["prepare", str(source), "-o", str(tmp_path / "o.parquet"), "--model", model, "--workers", "1", "-q"]) == 0
    err = capsys.readouterr().err
    assert "rows read 7, written 6, rejected 1" in err and "bad_role 1" in err
    assert main(["prepare", str(source), "-o", str(tmp_path / "f.parquet"), "--model", model, "--on-error", "fail", "-q"]) == 1
    assert "row 6" in capsys.readouterr().err


def test_line_numbers_count_blank_lines_across_chunks(tmp_path: Path, chatml: chatplate.ChatTemplate) -> None:
    source = tmp_path / "in.jsonl"
    good = json.dumps(GOOD[0])
    # Lines: 1 good, 2 blank, 3 good (indented), 4 broken, 5 blank (spaces), 6 blank, 7 good, 8 broken
    # (CRLF endings).
    lines = [good, "", " " + good, '{"messages": [', " \t ", "", good, "[1,"]
    source.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    summary = chatplate.prepare(source, tmp_path / "o.jsonl", chatml, workers=1, chunk_rows=2)
    entries = [json.loads(line) for line in (tmp_path / "o.jsonl.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["row"], e["line"], e["record"]) for e in entries] == [(2, 4, '{"messages": ['), (4, 8, "[1,")]
    assert summary.rows_read == 5 and summary.rows_written == 3


UNGUARDED = """
import chatplate
{setup}
t = chatplate.load({model!r})
{call}
"""
GUARDED = """
import chatplate
{setup}

def main():
    t = chatplate.load({model!r})
    {call}

if __name__ == "__main__":
    main()
"""


def run_script(tmp_path: Path, text: str) -> Any:
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(text, encoding="utf-8")
    # A timeout, not a hang, is how the old failure showed; the run itself takes seconds.
    return subprocess.run([sys.executable, "-W", "default", str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)


@pytest.mark.parametrize("layout", [UNGUARDED, GUARDED])
def test_prepare_in_a_script_with_or_without_the_main_guard(tmp_path: Path, chatml: chatplate.ChatTemplate, layout: str) -> None:
    rows = GOOD * 40
    write_jsonl(tmp_path / "in.jsonl", rows)
    call = 'print(chatplate.prepare("in.jsonl", "out.jsonl", t, workers=2, chunk_rows=16).rows_written)'
    text = layout.format(setup="", model=str(tokenizer_fixtures.chatml_bpe_dir()), call=call)
    done = run_script(tmp_path, text)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(rows))]
    warned = "SingleProcessWarning" in done.stderr
    assert warned == (layout is UNGUARDED), done.stderr
    if warned:
        # The warning points at the script's own call.
        line = next(number for number, source in enumerate(text.splitlines(), 1) if "prepare(" in source)
        assert 'if __name__ == "__main__":' in done.stderr and f"script.py:{line}:" in done.stderr
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    reference = chatplate.prepare(tmp_path / "in.jsonl", tmp_path / "ref.jsonl", chatml, workers=1, chunk_rows=16)
    assert reference.rows_written == len(written)
    assert written == [json.loads(line) for line in (tmp_path / "ref.jsonl").read_text(encoding="utf-8").splitlines()]


def test_prepare_dataset_in_an_unguarded_script_with_spawn(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    # spawn is macOS' and Windows' default (and forkserver Linux's from Python 3.14): workers
    # re-run the script's top level, so an unguarded call must not start them.
    setup = "import multiprocess\nmultiprocess.set_start_method('spawn', force=True)\nimport datasets"
    call = ("print(len(chatplate.prepare_dataset(datasets.Dataset.from_list([{'prompt': 'p', 'completion': 'c'}] * 8), "
            "t, num_proc=2)))")
    done = run_script(tmp_path, UNGUARDED.format(setup=setup, model=str(tokenizer_fixtures.chatml_bpe_dir()), call=call))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "8"
    assert "SingleProcessWarning" in done.stderr


def test_a_small_input_is_prepared_without_starting_workers(tmp_path: Path, chatml: chatplate.ChatTemplate,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from chatplate.training import pipeline

    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a worker pool was started")

    source = write_jsonl(tmp_path / "in.jsonl", GOOD * 10)
    monkeypatch.setattr(pipeline, "ProcessPoolExecutor", no_pool)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    # By default (all cores), starting workers for this little would cost more than the work.
    summary = chatplate.prepare(source, tmp_path / "o.jsonl", chatml, chunk_rows=5)
    assert summary.rows_written == len(GOOD) * 10
    # Workers start when the rest of the input, timed on its first chunk, would take longer than
    # starting them; never when the first chunk is all there is.
    monkeypatch.setattr(pipeline, "WORKER_START_SECONDS", -100.0)
    with pytest.raises(AssertionError, match="worker pool"):
        chatplate.prepare(source, tmp_path / "o.jsonl", chatml, chunk_rows=5)
    assert chatplate.prepare(source, tmp_path / "o.jsonl", chatml, chunk_rows=10_000).rows_written == len(GOOD) * 10
    # An explicit number of workers is kept.
    monkeypatch.setattr(pipeline, "WORKER_START_SECONDS", 100.0)
    with pytest.raises(AssertionError, match="worker pool"):
        chatplate.prepare(source, tmp_path / "o.jsonl", chatml, workers=2, chunk_rows=5)
    # Inputs whose first chunk does not tell its share (Parquet row groups) are judged by size.
    records = [r for r in GOOD if isinstance(r, dict) and "messages" in r and "tools" not in r] * 10
    table = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(records), table, row_group_size=3)
    assert chatplate.prepare(table, tmp_path / "p.jsonl", chatml).rows_written == len(records)
    monkeypatch.setattr(pipeline, "SMALL_INPUT_BYTES", table.stat().st_size)
    with pytest.raises(AssertionError, match="worker pool"):
        chatplate.prepare(table, tmp_path / "p.jsonl", chatml)
