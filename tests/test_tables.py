import pandas as pd
import pytest

from utils.tables import format_value, show_table


def test_numbers_are_formatted_by_kind_and_text_is_left_aligned():
    frame = pd.DataFrame({"claim": ["a long claim", "b"], "recovered": [0.7015513, 0.5], "time": [18054.843807, 3.0]})
    html = show_table(frame, {"recovered": "%", "time": "ms"}).to_html()
    assert "70.2%" in html and "18,054.8 ms" in html
    assert "7.015513e-01" not in html and "18054.843807" not in html
    assert "text-align: left" in html
    assert "overflow-wrap: anywhere" in html  # a long column name wraps instead of widening the page
    assert '<th class="blank level0"' not in html and "row_heading" not in html  # no index column


def test_default_formats_and_missing_values():
    assert format_value(0.123123) == "0.123"
    assert format_value(12345) == "12,345"
    assert format_value(float("nan")) == "–"
    assert format_value("holds") == "holds"
    with pytest.raises(ValueError, match="unknown number kind"):
        format_value(1.0, "furlongs")


def test_kinds_must_name_real_columns():
    with pytest.raises(KeyError, match="lacks"):
        show_table(pd.DataFrame({"a": [1]}), {"b": "%"})


def test_tables_show_whole_claims():
    claim = "a claim long enough to be cut at fifty characters by pandas' default display"
    assert claim in show_table(pd.DataFrame([{"claim": claim, "verdict": "holds"}])).to_html()
