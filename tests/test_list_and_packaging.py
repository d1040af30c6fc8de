"""`archc list` shows the spec library, from the repository and from a non-editable install."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from click.testing import CliRunner

from archc.cli import main

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = sorted(p.stem for p in (ROOT / "specs").glob("*.arch") if p.stem != "blocks")


def test_list_shows_every_spec_with_description_params_and_macs():
    result = CliRunner().invoke(main, ["list"], terminal_width=300)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[2:] if line.strip()}
    for name in NETWORKS:
        assert name in lines, name
    assert "blocks" not in lines
    assert "ResNet-50, He et al. 2015" in lines["resnet50"]
    assert "25,610,152" in lines["resnet50"] and "3.86G" in lines["resnet50"]
    assert "60,965,224" in lines["alexnet"] and "724M" in lines["alexnet"]
    order = [name for name in lines if name.startswith("resnet")]  # natural order: 18 before 101
    assert order == ["resnet18", "resnet20_cifar", "resnet34", "resnet50", "resnet101", "resnet152"]


def test_list_reports_a_broken_spec_and_fails(tmp_path):
    shutil.copy(ROOT / "specs" / "blocks.arch", tmp_path)
    (tmp_path / "good.arch").write_text('network good "a good one"\ninput 8x8x1\nconv 3x3, 4\n')
    (tmp_path / "bad.arch").write_text('network bad "a bad one"\ninput 8x8x1\nconv 9x9, 4\n')
    result = CliRunner().invoke(main, ["list", str(tmp_path)], terminal_width=300)
    assert result.exit_code == 1
    assert "a good one" in result.output
    assert "error[A201]" in result.output
    assert "blocks" not in result.output


def test_non_editable_install_ships_the_spec_library(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("archc", "specs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob("archc_cnn-*.whl")  # the distribution is archc-cnn; the package stays `archc`
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        shipped = {Path(n).stem for n in z.namelist() if n.startswith("archc/specs/") and n.endswith(".arch")}
        z.extractall(site)
    assert shipped == set(NETWORKS) | {"blocks"}
    env = dict(os.environ, PYTHONPATH=str(site), COLUMNS="300")
    out = subprocess.run([sys.executable, "-m", "archc", "list"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    assert listed == set(NETWORKS)
    mine = tmp_path / "elsewhere" / "mine.arch"  # the installed library imports from any directory
    mine.parent.mkdir()
    mine.write_text('import "archc/blocks.arch"\ninput 32x32x3\nconv 3x3, 16, same, bn, relu\nbasic(16)\n')
    subprocess.run([sys.executable, "-m", "archc", "check", str(mine)], cwd=tmp_path, env=env, check=True,
                   capture_output=True)


def test_cli_set_overrides_serve_cifar():
    import json

    for name in ("resnet50", "vgg16", "densenet121", "mobilenet_v1", "googlenet", "lenet5", "allcnn_c"):
        result = CliRunner().invoke(main, ["check", str(ROOT / "specs" / f"{name}.arch"), "--set", "classes=10",
                                           "--set", "input=32x32x3", "--format", "json"])
        assert result.exit_code == 0, (name, result.output)
        plan = json.loads(result.output)
        assert plan["input"] == [32, 32, 3] and plan["output"] == [10], name


def test_cli_resnet50_v15():
    import json

    runner = CliRunner()
    spec = str(ROOT / "specs" / "resnet50.arch")
    paper = json.loads(runner.invoke(main, ["check", spec, "--format", "json"]).output)
    v15 = json.loads(runner.invoke(main, ["check", spec, "--set", "downsample_at=2", "--format", "json"]).output)
    assert paper["trainable_params"] == v15["trainable_params"] == 25_557_032
    assert (paper["macs"], v15["macs"]) == (3_857_973_248, 4_089_184_256)
