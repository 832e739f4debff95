"""Errors raised by the trace readers, and the checked CSV helpers that raise them.

Every refusal of a trace file names the file, the 1-based physical line (the header is line 1) and the
column, so an operator can open the file at the fault instead of guessing which of 46,000 rows is bad.
The helpers below are shared by the 2019 and 2021 readers so both refuse bad input the same way.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path

import numpy as np


class TraceFormatError(ValueError):
    """A trace file that does not have the expected shape or values.

    ``line`` is the 1-based line number in the file (the header is line 1; 0 when the fault is not tied
    to a line, e.g. a missing file). ``column`` is the column's header name when known, otherwise
    ``"#<1-based index>"``.
    """

    def __init__(self, path: str | PathLike[str], line: int, column: str, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.problem = problem
        where = f"{self.path}:{line}" if line > 0 else self.path
        if column:
            where += f": column {column!r}"
        super().__init__(f"{where}: {problem}")


def not_utf8(path: str | PathLike[str], header: Sequence[str]) -> TraceFormatError:
    """The error for a file that is not UTF-8 text, naming the line and column of its first bad byte.

    The text decoder reads ahead in blocks, so the line is found again from the raw bytes (a
    second pass over the file, on this error path only)."""
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                before = line[: error.start].decode("utf-8", errors="replace")
                position = before.count(",")
                column = (header[position] if position < len(header) else f"#{position + 1}") if number > 1 else ""
                return TraceFormatError(path, number, column, f"not UTF-8 text: byte {line[error.start]:#04x} "
                                        f"at character {len(before) + 1} of the line")
    return TraceFormatError(path, 0, "", "not UTF-8 text")


def _decoded(reader: Iterator[list[str]], path: Path, header: Sequence[str]) -> Iterator[list[str]]:
    """The rows of ``reader``; a byte that is not UTF-8 becomes a :class:`TraceFormatError`."""
    try:
        yield from reader
    except UnicodeDecodeError:
        raise not_utf8(path, header) from None


class CheckedCsv:
    """A CSV file read row by row, refusing missing columns, ragged rows and bad numbers.

    Rows are streamed (never all held); ``line`` is the physical line of the row last yielded, which
    ``csv`` tracks even across quoted newlines.
    """

    def __init__(self, path: str | PathLike[str], required: Sequence[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TraceFormatError(self.path, 0, "", "no such file")
        self._file = self.path.open(newline="", encoding="utf-8")
        self._reader = csv.reader(self._file)
        try:
            header = next(self._reader)
        except StopIteration:
            self._file.close()
            raise TraceFormatError(self.path, 1, "", "file is empty (no header line)") from None
        except UnicodeDecodeError:
            self._file.close()
            raise not_utf8(self.path, []) from None
        self.header: list[str] = [name.strip() for name in header]
        self.index: dict[str, int] = {}
        for position, name in enumerate(self.header):
            self.index.setdefault(name, position)
        for name in required:
            if name not in self.index:
                self._file.close()
                raise TraceFormatError(
                    self.path,
                    1,
                    name,
                    f"missing column; the header has {len(self.header)} columns: "
                    f"{', '.join(self.header[:8])}{', ...' if len(self.header) > 8 else ''}",
                )
        self.line = 1

    def close(self) -> None:
        """Close the file early (``rows()`` closes it when exhausted)."""
        self._file.close()

    def column_name(self, position: int) -> str:
        """Header name of a 0-based column position (``#n`` past the header's end)."""
        return self.header[position] if position < len(self.header) else f"#{position + 1}"

    def rows(self) -> Iterator[list[str]]:
        """Data rows, each with exactly as many fields as the header; the file is closed at the end."""
        width = len(self.header)
        rows_seen = 0
        try:
            for row in _decoded(self._reader, self.path, self.header):
                self.line = self._reader.line_num
                if not row:
                    continue
                if len(row) != width:
                    position = min(len(row), width)
                    raise TraceFormatError(
                        self.path,
                        self.line,
                        self.column_name(position),
                        f"ragged row: {len(row)} fields, the header has {width}",
                    )
                rows_seen += 1
                yield row
        finally:
            self._file.close()
        if rows_seen == 0:
            raise TraceFormatError(self.path, 1, "", "file has a header but no data rows")

    def number(self, row: Sequence[str], name: str) -> float:
        """The named cell as a finite, non-negative float."""
        position = self.index[name]
        text = row[position]
        try:
            value = float(text)
        except ValueError:
            raise TraceFormatError(self.path, self.line, name, f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise TraceFormatError(self.path, self.line, name, f"not a finite number: {text!r}")
        if value < 0:
            raise TraceFormatError(self.path, self.line, name, f"negative value: {text!r}")
        return value

    def count(self, row: Sequence[str], name: str) -> int:
        """The named cell as a non-negative whole number (``12`` or ``12.0``)."""
        value = self.number(row, name)
        if value != int(value):
            raise TraceFormatError(
                self.path, self.line, name, f"not a whole number: {row[self.index[name]]!r}"
            )
        return int(value)

    def counts(self, row: Sequence[str], start: int, stop: int) -> np.ndarray:
        """Cells ``start:stop`` as non-negative int32 counts.

        The fast path hands the whole slice to numpy (about 75 µs for 1,440 cells); only when that
        fails are the cells walked one by one to name the first bad column.
        """
        cells = row[start:stop]
        try:
            values = np.array(cells, dtype=np.int64)
        except (ValueError, OverflowError):
            # Walk the cells to name the first bad one: not a whole number, or beyond int64.
            for offset, text in enumerate(cells):
                try:
                    value = int(text)
                except ValueError:
                    raise TraceFormatError(
                        self.path,
                        self.line,
                        self.column_name(start + offset),
                        f"not a whole number of invocations: {text!r}",
                    ) from None
                if not np.iinfo(np.int64).min <= value <= np.iinfo(np.int64).max:
                    sign = "negative invocation count" if value < 0 else "invocation count too large for int32"
                    raise TraceFormatError(self.path, self.line, self.column_name(start + offset), f"{sign}: {text!r}")
            raise TraceFormatError(self.path, self.line, "", "invocation counts that numpy cannot read") from None
        if values.size and values.min() < 0:
            offset = int(np.argmax(values < 0))
            raise TraceFormatError(
                self.path,
                self.line,
                self.column_name(start + offset),
                f"negative invocation count: {cells[offset]!r}",
            )
        if values.size and values.max() > np.iinfo(np.int32).max:
            offset = int(np.argmax(values > np.iinfo(np.int32).max))
            raise TraceFormatError(
                self.path,
                self.line,
                self.column_name(start + offset),
                f"invocation count too large for int32: {cells[offset]!r}",
            )
        return values.astype(np.int32)
