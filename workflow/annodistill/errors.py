"""One exception type for input the study refuses, with the place it was found."""
from __future__ import annotations


class InputError(Exception):
    """Bad input: names the file, the row and the field, and what was expected."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | None = None):
        self.message, self.path, self.row, self.field = message, path, row, field
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
