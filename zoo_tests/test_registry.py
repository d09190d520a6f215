"""Registry: user folders, caching, thread safety, light imports, public surface."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

import zoo
from zoo._registry import REGISTRY, builtin_dir
from zoo._yaml import load_yaml

Writer = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parent.parent


def test_public_surface_is_explicit_and_sorted() -> None:
    assert zoo.__all__ == sorted(zoo.__all__)
    public = {n for n in dir(zoo) if not n.startswith("_") and not isinstance(getattr(zoo, n), type(zoo))}
    public -= {"annotations", "importlib", "Any", "TYPE_CHECKING"}  # module-level imports of __init__
    assert public == set(zoo.__all__) - {"__version__"}
    for name in zoo.__all__:
        assert hasattr(zoo, name)
    with pytest.raises(AttributeError):
        zoo.does_not_exist  # noqa: B018


def test_every_error_derives_from_zoo_error() -> None:
    for name in zoo.__all__:
        obj = getattr(zoo, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, zoo.ZooError)


def test_user_folder_through_zoo_path(arch_dir: Writer) -> None:
    arch_dir("tiny.yaml", """
        name: my_tiny_net
        description: a user's own model
        source: tests
        input: [3, 8, 8]
        params: {num_classes: 4}
        published: {params: 1140, source: computed}
        layers:
          - conv: {filters: 4, kernel: 3, padding: same, act: relu}
          - flatten
          - dense: "${num_classes}"
    """)
    assert "my_tiny_net" in zoo.list_models()
    assert zoo.list_models("my_*") == ["my_tiny_net"]
    assert zoo.count_params(zoo.build("my_tiny_net")) == 3 * 4 * 9 + 4 + 256 * 4 + 4 == 1140


def test_register_dir_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(zoo.RegistryError):
        zoo.register_dir(tmp_path / "nope")


def test_edited_file_is_picked_up(arch_dir: Writer) -> None:
    text = "name: e\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 0, source: s}\nlayers: [dense: 2]\n"
    path = arch_dir("e.yaml", text)
    assert zoo.count_params(zoo.build("e")) == 10
    path.write_text(text.replace("dense: 2", "dense: 30"))
    assert zoo.count_params(zoo.build("e")) == 150


def test_import_and_listing_stay_light() -> None:
    heavy = "('torch', 'timm', 'torchvision', 'matplotlib', 'sklearn', 'zoo.train')"
    code = f"import sys, zoo; zoo.list_models(); print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # listing parses YAML only: not even torch
    code = f"import sys, zoo; zoo.build('mnist_cnn_v1'); print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['torch']"


def test_registry_is_thread_safe() -> None:
    REGISTRY._index_key = None
    errors: list[BaseException] = []
    counts: list[int] = []

    def work() -> None:
        try:
            counts.append(zoo.count_params(zoo.build("mnist_cnn_v1")))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and counts == [95082] * 8


def test_json_schema_accepts_every_shipped_file() -> None:
    schema = zoo.architecture_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    files = [p for p in builtin_dir().rglob("*.yaml") if load_yaml(p).get("kind") != "blocks"]
    assert files
    for path in files:
        data = json.loads(json.dumps(load_yaml(path)))
        errors = list(validator.iter_errors(data))
        assert not errors, f"{path}: {errors[0].message}"
    assert list(validator.iter_errors({"name": "x", "layerz": []}))  # and rejects a typo


def test_cli_list_summary_schema(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "zoo"]
    out = subprocess.run([*run, "list"], capture_output=True, text=True, check=True).stdout
    assert "mnist_cnn_v1" in out and "95,082" in out
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "summarize.py"), "mnist_cnn", "--depth", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "published params: 80,662" in out.stdout and "matches" in out.stdout
    out = subprocess.run([*run, "summary", "mnist_cnn_v1", "--input", "1", "32", "32"], capture_output=True, text=True)
    assert out.returncode == 0 and "total params:     123,754" in out.stdout  # 32x32 input: 4x4x64 into the first dense layer
    out = subprocess.run([*run, "summary", "mnist_cnn_v2"], capture_output=True, text=True)
    assert out.returncode == 2 and "did you mean 'mnist_cnn_v1'" in out.stderr
    schema_file = tmp_path / "schema.json"
    subprocess.run([*run, "schema", "-o", str(schema_file)], check=True)
    assert json.loads(schema_file.read_text())["title"] == "zoo architecture file"


def test_summary_exit_status_is_nonzero_when_counts_differ(arch_dir: Writer, tmp_path: Path) -> None:
    path = arch_dir("w.yaml", "name: w\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 11, source: s}\nlayers: [dense: 2]\n")
    env = {"ZOO_PATH": str(path.parent), "PATH": ""}
    out = subprocess.run([sys.executable, "-m", "zoo", "summary", "w"], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "DIFFERS by -1" in out.stdout


@pytest.mark.slow
def test_wheel_ships_the_architectures(tmp_path: Path) -> None:
    """Build a wheel, install it (no deps) into a fresh target and build a model from elsewhere."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("zoo-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = "import zoo; m = zoo.build('mnist_cnn_v1'); print(zoo.__file__); print(zoo.count_params(m))"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": ""}, check=True)
    where, count = out.stdout.split()
    assert where.startswith(str(target)) and count == "95082"
