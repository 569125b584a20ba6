"""``aligners align --input``: bad lines named by file and line, --skip-invalid, --on-error."""

from __future__ import annotations

import json

from tests.engine.test_cli_policies import REWRITE, records, run, wrapper  # noqa: F401


def _write(path, lines: list[bytes]) -> str:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def test_bad_lines_are_named_and_stop_the_run(wrapper, tmp_path) -> None:  # noqa: F811
    good = json.dumps({"question": "q", "answer": "a bad answer"}).encode()
    cases = {
        b'{"question": "q", "answer": "   "}': "answer is empty",
        b'{"question": "q", "answer": "bad \\udcff"}': "lone surrogate",
        b"\xff\xfe not utf-8": "not valid UTF-8 (byte 0xff at position 0)",
        b'{"question": 3, "answer": "x"}': "field 'question' must be a string",
        b"{not json": "not valid JSON",
    }
    for line, message in cases.items():
        path = _write(tmp_path / "pairs.jsonl", [good, line])
        done = run(wrapper, "align", "--input", path)
        assert done.returncode != 0
        assert "pairs.jsonl:2: " in done.stderr and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_skip_invalid_aligns_the_good_lines_and_reports_the_bad(wrapper, tmp_path) -> None:  # noqa: F811
    lines = [
        json.dumps({"question": "q", "answer": "a bad answer"}).encode(),
        b'{"question": "q", "answer": ""}',
        json.dumps({"question": "q", "answer": "a fine answer"}).encode(),
        b"\xff",
    ]
    path = _write(tmp_path / "pairs.jsonl", lines)
    done = run(wrapper, "align", "--input", path, "--skip-invalid")
    assert done.returncode == 0, done.stderr
    assert [r["text"] for r in records(done.stdout)] == [REWRITE, "a fine answer"]
    assert "skipped" in done.stderr and "pairs.jsonl:2: answer is empty" in done.stderr
    assert "pairs.jsonl:4: not valid UTF-8" in done.stderr


def test_align_takes_max_new_tokens_and_on_error(wrapper) -> None:  # noqa: F811
    done = run(wrapper, "align", "-a", "a fine answer", "--max-new-tokens", "7", "--json")
    assert done.returncode == 0, done.stderr
    bad = run(wrapper, "align", "-a", "x", "--on-error", "ignore")
    assert bad.returncode == 2 and "--on-error must be one of raise, return_original" in bad.stderr
