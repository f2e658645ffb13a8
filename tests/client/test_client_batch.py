"""`Client.batch`: many files through one process, and a table that says what became of each."""

from __future__ import annotations

import sys

import pytest

from pixyz_client import Client
from pixyz_client.batch import COLUMNS

from conftest import DATA

STEP = DATA / "step" / "red_cube_blue_cylinder.step"
STL = DATA / "stl" / "Spider_ascii.stl"
OFF = DATA / "off" / "Wuson.off"


@pytest.fixture()
def sdk(service):
    with Client(service.url, service.key, progress=False) as client:
        yield client


def test_a_batch_of_models_gives_one_row_per_file_in_order(sdk, tmp_path):
    not_a_model = tmp_path / "notes.dwg"
    not_a_model.write_text("not a model")
    missing = tmp_path / "absent.stl"
    files = [STL, STEP, not_a_model, OFF, missing]

    table = sdk.batch(files, "generate_metadata", concurrency=2)

    assert list(table.columns) == list(COLUMNS)
    rows = table.to_dict("records")
    assert [row["file"] for row in rows] == [str(f) for f in files]
    assert [row["status"] for row in rows[:4]] == ["SUCCESS", "SUCCESS", "FAILURE", "SUCCESS"]
    assert rows[1]["result"]["metadata"]["part_count"] == 2
    assert rows[0]["result"]["metadata"]["polygon_count"] == 1368
    assert "unsupported format '.dwg'" in rows[2]["error"]
    # The file that was never sent has no job: pandas shows the missing values as NaN.
    assert table["status"].isna().tolist() == [False] * 4 + [True]
    assert table["uuid"].isna().tolist() == [False] * 4 + [True]
    assert "No such file" in rows[4]["error"]
    assert all(row["seconds"] > 0 for row in rows[:4])
    assert len({row["uuid"] for row in rows[:4]}) == 4


def test_without_pandas_the_table_is_a_list_of_dicts(service, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    files = []
    for n in range(3):
        files.append(tmp_path / f"in{n}.bin")
        files[-1].write_bytes(b"x" * n)
    with Client(service.url, service.key) as client:
        rows = client.batch(files, "api_test", {"run": "batch"}, concurrency=3)
    assert isinstance(rows, list) and [set(row) for row in rows] == [set(COLUMNS)] * 3
    assert all(row["result"]["params"] == {"run": "batch"} for row in rows)
    assert "Batch api_test" in capsys.readouterr().err  # the batch's bar

    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        client.batch(files, "api_test", concurrency=0)
