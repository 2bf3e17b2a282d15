"""Rows read with python-calamine, given as openpyxl gives them.

calamine reads a large workbook many times faster than openpyxl (a 100,000-row sheet in
seconds, not a minute), but types some values differently. The code that reads rows was
written, and tested, against openpyxl's values; this keeps it so.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from domain.records import Cell

# Integral floats below this read back as int, as openpyxl reads a number stored without a
# decimal point. Excel keeps 15 significant digits, so larger ones are stored as floats.
_EXACT_INTEGERS = 10.0 ** 15


def openpyxl_row(values: list[Any]) -> list[Cell]:
    """One row as openpyxl's ``values_only`` gives it.

    calamine returns every number as a float, an empty cell as "", and a date-formatted
    whole day as a `date`; openpyxl returns an int for a number stored without a fraction,
    None, and a `datetime` at midnight. Times, durations, other datetimes, booleans and text
    are alike. A formula cell reads as its last computed value, an error cell as empty.
    """
    # text first, inline: most cells are text, and a large sheet has millions
    return [(v or None) if type(v) is str else _value(v) for v in values]


def _value(v: Any) -> Cell:
    kind = type(v)
    if kind is float:
        return int(v) if v.is_integer() and -_EXACT_INTEGERS < v < _EXACT_INTEGERS else v
    if kind is date:
        return datetime.combine(v, time())
    return v
