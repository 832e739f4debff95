"""``mfrm replay`` with bad arguments or files: one ``Error:`` line naming what is wrong, exit 2.

No platform is needed: every refusal comes before the first request (the API host given is a
loopback port nobody listens on).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.openwhisk import AUTH

from controller.commands.replay import replay_command

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_2019 = ROOT / "data" / "azure-functions-2019-sample"
SAMPLE_2021 = ROOT / "data" / "azure-functions-2021-sample"
TRACE_2021_FILE = "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"


def copy_with_cell(tmp_path: Path, sample: Path, file: str, line: int, column: int, value: str) -> Path:
    """A copy of ``sample`` with cell (1-based ``line``, 0-based ``column``) of ``file`` replaced."""
    folder = tmp_path / "trace"
    shutil.copytree(sample, folder)
    path = folder / file
    lines = path.read_text().split("\n")
    cells = lines[line - 1].split(",")
    cells[column] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines))
    return folder


def copy_with_bytes(tmp_path: Path, line: int, raw: bytes) -> Path:
    """A copy of the 2019 sample whose invocations file has ``raw`` at the start of ``line``."""
    folder = tmp_path / "trace"
    shutil.copytree(SAMPLE_2019, folder)
    path = folder / "invocations.csv"
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = raw + lines[line - 1]
    path.write_bytes(b"\n".join(lines))
    return folder


def replay(tmp_path: Path, *args: str):
    base = ["--api-host", "http://127.0.0.1:9", "--auth", AUTH, "--minutes", "1", "--out", str(tmp_path / "out")]
    return CliRunner().invoke(replay_command, [*base, *args])


def assert_one_line_usage_error(result, *fragments: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# Minute columns of the 2019 sample start at column 4 (minute 480); line 4 is its third function.
BAD_TRACES = [
    ("a-count-that-is-not-a-number", lambda p: copy_with_cell(p, SAMPLE_2019, "invocations.csv", 4, 6, "x7"),
     ("invocations.csv:4", "'482'", "not a whole number")),
    ("a-count-beyond-int64", lambda p: copy_with_cell(p, SAMPLE_2019, "invocations.csv", 4, 6, "9" * 25),
     ("invocations.csv:4", "'482'", "too large")),
    ("a-count-beyond-int32", lambda p: copy_with_cell(p, SAMPLE_2019, "invocations.csv", 4, 6, "3000000000"),
     ("invocations.csv:4", "'482'", "too large for int32")),
    ("a-negative-count-beyond-int64", lambda p: copy_with_cell(p, SAMPLE_2019, "invocations.csv", 5, 7, "-" + "9" * 25),
     ("invocations.csv:5", "'483'", "negative")),
    ("a-ragged-row", lambda p: copy_with_cell(p, SAMPLE_2019, "invocations.csv", 6, 5, "1,2"),
     ("invocations.csv:6", "ragged row")),
    ("a-bad-duration", lambda p: copy_with_cell(p, SAMPLE_2019, "durations.csv", 3, 3, "abc"),
     ("durations.csv:3", "'Average'", "not a number")),
    ("bytes-that-are-not-utf-8", lambda p: copy_with_bytes(p, 7, b"\xff\xfe"),
     ("invocations.csv:7", "not UTF-8")),
    ("a-2021-timestamp-a-century-late", lambda p: copy_with_cell(p, SAMPLE_2021, TRACE_2021_FILE, 5, 2, "3e9"),
     (f"{TRACE_2021_FILE}:5", "'end_timestamp'", "more than a year")),
]


@pytest.mark.parametrize("make, fragments", [(m, f) for _, m, f in BAD_TRACES], ids=[i for i, _, _ in BAD_TRACES])
def test_a_malformed_trace_is_refused_in_one_line_naming_the_file_and_line(tmp_path, make, fragments):
    trace = make(tmp_path)
    result = replay(tmp_path, "--trace", str(trace), "--functions", "400", "--select", "busiest",
                    "--start-minute", "0" if "2021" in fragments[0] else "480")
    assert_one_line_usage_error(result, "workload.trace_dir", *fragments)


def test_a_rate_scale_that_overflows_a_minutes_count_is_refused_naming_the_function_and_minute(tmp_path):
    # 3,000,000 invocations of the busiest function in minute 481, times 1000, is past int32.
    trace = copy_with_cell(tmp_path, SAMPLE_2019, "invocations.csv", 2, 5, "3000000")
    result = replay(tmp_path, "--trace", str(trace), "--functions", "1", "--select", "busiest", "--rate-scale", "1000")
    assert_one_line_usage_error(result, "workload.rate_scale=1000", "trace minute 481", "3000000 invocations",
                                "-000")  # the function's action name


def test_a_minute_with_more_arrivals_than_a_replay_takes_is_refused_naming_it(tmp_path):
    trace = copy_with_cell(tmp_path, SAMPLE_2019, "invocations.csv", 2, 4, "2000000000")
    result = replay(tmp_path, "--trace", str(trace), "--functions", "1", "--select", "busiest")
    assert_one_line_usage_error(result, "trace minute 480", "2000000000", "-000")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--auth", "no-colon"], ["replay.auth", "uuid:key"]),
        (["--api-host", "http://127.0.0.1:99999"], ["replay.api_host", "99999"]),
        (["--api-host", "http://exa mple.com"], ["replay.api_host"]),
        (["--api-host", "http://127.0.0.1:9/?x=1"], ["replay.api_host", "query"]),
        (["--start-minute", "950", "--minutes", "20"], ["workload.start_minute=950"]),
        (["--functions", "401"], ["401"]),
        (["--trace", "/nonexistent/trace"], ["workload.trace_dir", "/nonexistent/trace"]),
        (["--profiles", "trace", "--deploy"], ["replay.deploy", "benchmark"]),
    ],
    ids=["auth-without-colon", "port-out-of-range", "host-with-a-space", "host-with-a-query",
         "minutes-past-the-trace", "more-functions-than-the-trace", "missing-trace", "trace-profiles-cannot-deploy"],
)
def test_a_bad_argument_is_refused_in_one_line_naming_it(tmp_path, args, fragments):
    assert_one_line_usage_error(replay(tmp_path, *args), *fragments)


@pytest.mark.parametrize(
    "args, key",
    [(["--speedup", "nan"], "replay.speedup"), (["--drain-timeout", "inf"], "replay.drain_timeout_s"),
     (["--set", "replay.max_failure_fraction=2"], "replay.max_failure_fraction"),
     (["--set", "replay.request_timeout_s=0"], "replay.request_timeout_s")],
    ids=["nan-speedup", "infinite-drain", "failure-fraction-above-1", "zero-request-time-out"],
)
def test_a_setting_out_of_range_is_refused_under_the_settings_heading_one_line_per_key(tmp_path, args, key):
    result = replay(tmp_path, *args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert lines[0] == "Error: invalid settings:" and len(lines) == 2 and lines[1].strip().startswith(key), lines


def test_an_output_folder_that_is_a_file_is_refused_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = replay(tmp_path, "--set", f"output.out_dir={blocker}")
    assert_one_line_usage_error(result, "output.out_dir", str(blocker))


def test_a_records_path_that_is_a_folder_is_refused_naming_it(tmp_path):
    (tmp_path / "out" / "records.csv").mkdir(parents=True)
    result = replay(tmp_path)
    assert_one_line_usage_error(result, "records.csv", "not a file")
