"""The `cloudkit` command: help, the sample job, and one-line errors with exit code 1."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import zarr

from cloudkit.sample.synthetic import write_l1c_safe
from tests.helpers.cli import one_line_error, run
from tests.helpers.shared_data import L2A_T29UNU


@pytest.fixture()
def product(tmp_path):
    """A small synthetic L1C product (stands for a real .SAFE; see cloudkit.sample.synthetic)."""
    return write_l1c_safe(tmp_path / "in", size_10m=192, seed=7).path


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys; from cloudkit.cli import main; "
        "rc = main(['--help']); rc2 = main(['tile', '--help']); "
        "assert 'torch' not in sys.modules and 'faiss' not in sys.modules, 'heavy import'; "
        "sys.exit(rc or rc2)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "tile" in out.stdout and "--tile-size" in out.stdout


def test_version(capsys):
    from cloudkit import __version__
    from cloudkit.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cloudkit {__version__}"


@pytest.mark.parametrize(
    "command",
    [
        "demo",
        "tile",
        "pretrain",
        "evaluate",
        "finetune",
        "experiment",
        "predict",
        "models",
        "export",
        "check",
    ],
)
def test_help_reads_as_prose(command, capsys, monkeypatch):
    """A docstring's own line breaks would fall mid-sentence in a wide terminal: with 1000
    columns, each paragraph of the description is one line."""
    from cloudkit.cli import app, main

    monkeypatch.setenv("COLUMNS", "1000")
    assert main([command, "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (doc,) = [c.callback.__doc__ for c in app.registered_commands if c.name == command]
    for paragraph in doc.split("\n\n"):
        if paragraph.strip():
            assert any(" ".join(paragraph.split()) in line for line in lines), paragraph


@pytest.mark.parametrize(
    ("command", "config"),
    [
        ("pretrain", "PretrainConfig"),
        ("finetune", "FinetuneConfig"),
        ("experiment", "ExperimentConfig"),
    ],
)
def test_option_defaults_are_the_configs(command, config):
    """Every option of the training commands defaults to its config field's default (tuples as
    the comma-separated text the option parses): the CLI holds no copy of a default."""
    import dataclasses

    import typer

    from cloudkit import config as configs
    from cloudkit.cli import app

    fields = {f.name: f.default for f in dataclasses.fields(getattr(configs, config))}
    params = typer.main.get_command(app).commands[command].params
    checked = 0
    for param in params:
        default = fields.get(param.name.rstrip("_"), dataclasses.MISSING)
        if default is dataclasses.MISSING:
            assert param.required, param.name  # stores, out: no default anywhere
            continue
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        assert param.default == default, param.name
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("command", "config", "own"),
    [
        ("tile", "TileOptions", {"scenes", "out", "sample", "keep_going", "cluster"}),
        (
            "predict",
            "PredictOptions",
            {"scenes", "model", "out", "device", "precision", "compile_model", "sample", "cluster"},
        ),
    ],
)
def test_scene_command_defaults_are_the_configs(command, config, own):
    """Every option of tile and predict that is a field of its options defaults to that
    field's default; the others are the command's own (which scenes, which model, where)."""
    import dataclasses

    import typer

    from cloudkit import config as configs
    from cloudkit.cli import app

    fields = {f.name: f.default for f in dataclasses.fields(getattr(configs, config))}
    params = typer.main.get_command(app).commands[command].params
    for param in params:
        if param.name in own:
            continue
        assert param.name in fields, param.name  # an option the options do not know
        assert param.default == fields[param.name], param.name
    assert {p.name for p in params} - own  # some options were checked


def test_sample_job(tmp_path, capsys):
    code, out, _ = run(capsys, "tile", "--sample", str(tmp_path / "demo.zarr"))
    assert code == 0
    assert "1 scene(s) tiled" in out
    g = zarr.open_group(str(tmp_path / "demo.zarr"), mode="r")
    assert g.attrs["num_tiles"] >= 3 and len(g.attrs["bands"]) == 13
    # a second run finds the scene already there
    code, out, _ = run(capsys, "tile", "--sample", str(tmp_path / "demo.zarr"))
    assert code == 0 and "1 already in the store" in out


def test_missing_band_names_the_file(tmp_path, capsys, product):
    b03 = next(product.glob("GRANULE/*/IMG_DATA/*_B03.jp2"))
    b03.unlink()
    code, _, err = run(capsys, "tile", str(product), str(tmp_path / "o.zarr"))
    assert code == 1
    line = one_line_error(err)
    assert "B03" in line and b03.name in line


@pytest.mark.shared_data
def test_missing_resolution_suggests_what_exists(tmp_path, capsys):
    code, _, err = run(
        capsys, "tile", str(L2A_T29UNU), str(tmp_path / "o.zarr"), "--resolution", "10"
    )
    assert code == 1
    line = one_line_error(err)
    assert "_10m.jp2" in line and "60" in line


def test_corrupt_jp2_names_the_file_and_keeps_earlier_scenes(tmp_path, capsys):
    good = write_l1c_safe(tmp_path / "good", size_10m=192, seed=1, tile_id="T31TCJ").path
    bad = write_l1c_safe(tmp_path / "bad", size_10m=192, seed=2, tile_id="T31TDJ").path
    out = tmp_path / "o.zarr"
    assert run(capsys, "tile", str(good), str(out))[0] == 0
    b04 = next(bad.glob("GRANULE/*/IMG_DATA/*_B04.jp2"))
    b04.write_bytes(b04.read_bytes()[:300])  # a truncated download
    code, _, err = run(capsys, "tile", str(good), str(bad), str(out))
    assert code == 1
    assert b04.name in one_line_error(err)
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["num_scenes"] == 1 and g.attrs["in_progress"] is None


def test_keep_going_reports_every_failure(tmp_path, capsys):
    good = write_l1c_safe(tmp_path / "good", size_10m=192, seed=1, tile_id="T31TCJ").path
    bad = write_l1c_safe(tmp_path / "bad", size_10m=192, seed=2, tile_id="T31TDJ").path
    next(bad.glob("GRANULE/*/IMG_DATA/*_B11.jp2")).write_bytes(b"not a jpeg 2000 file")
    out = tmp_path / "o.zarr"
    code, stdout, err = run(capsys, "tile", str(bad), str(good), str(out), "--keep-going")
    assert code == 1
    assert "1 scene(s) tiled" in stdout and "1 failed" in stdout
    assert "B11" in err
    assert zarr.open_group(str(out), mode="r").attrs["num_scenes"] == 1


def test_unknown_layout(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    code, _, err = run(capsys, "tile", str(folder), str(tmp_path / "o.zarr"))
    assert code == 1
    assert "notes" in one_line_error(err)


def test_file_that_is_not_a_raster(tmp_path, capsys):
    fake = tmp_path / "scene.tif"
    fake.write_text("this is text, not a GeoTIFF")
    code, _, err = run(capsys, "tile", str(fake), str(tmp_path / "o.zarr"))
    assert code == 1
    assert "scene.tif" in one_line_error(err)


def test_missing_scene_path(tmp_path, capsys):
    code, _, err = run(capsys, "tile", str(tmp_path / "nowhere.SAFE"), str(tmp_path / "o.zarr"))
    assert code == 1
    assert "nowhere.SAFE" in one_line_error(err)


def test_unwritable_output(tmp_path, capsys, product):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    code, _, err = run(capsys, "tile", str(product), str(blocker / "o.zarr"))
    assert code == 1
    assert "o.zarr" in one_line_error(err)


def test_bad_tile_options(tmp_path, capsys, product):
    code, _, err = run(capsys, "tile", str(product), str(tmp_path / "o.zarr"), "--overlap", "400")
    assert code == 1
    assert "--overlap" in one_line_error(err)


def test_unknown_band(tmp_path, capsys, product):
    code, _, err = run(capsys, "tile", str(product), str(tmp_path / "o.zarr"), "--bands", "B02,B13")
    assert code == 1
    assert "B13" in one_line_error(err)


def test_debug_shows_traceback(tmp_path, product):
    env = {"CLOUDKIT_DEBUG": "1", "PATH": "/usr/bin:/bin"}
    code = f"from cloudkit.cli import main; main(['tile', {str(tmp_path / 'none')!r}, 'o.zarr'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_console_script_is_installed():
    assert shutil.which("cloudkit") is not None
