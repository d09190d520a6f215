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


def test_every_error_class_is_public() -> None:
    from zoo import _errors

    defined = {n for n, obj in vars(_errors).items() if isinstance(obj, type) and issubclass(obj, Exception)}
    assert set(_errors.ERRORS) == defined  # a new exception class is exported, through ERRORS alone
    assert defined <= set(zoo.__all__)


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
    REGISTRY.forget()
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
    for flag in ("--input-size", "--input"):  # input_size= in Python; --input is the older spelling
        out = subprocess.run([*run, "summary", "mnist_cnn_v1", flag, "1", "32", "32"], capture_output=True, text=True)
        assert out.returncode == 0 and "total params:     123,754" in out.stdout  # 32x32: 4x4x64 into the first dense layer
    out = subprocess.run([*run, "summary", "mnist_cnn_v2"], capture_output=True, text=True)
    assert out.returncode == 1 and "did you mean 'mnist_cnn_v1'" in out.stderr
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


# ---------------------------------------------------------------- listing from counts (issue 13)

@pytest.mark.parametrize("name", zoo.list_models())
def test_count_from_the_expansion_equals_the_built_count(name: str) -> None:
    """``zoo list`` counts from the primitive table's rules; the modules actually built agree, in
    both conventions (keras adds batch-norm moving statistics)."""
    from zoo._api import resolve_params
    from zoo._catalog import count_expanded

    spec = zoo.get_spec(name)
    with_params = dict(spec.published.with_params) if spec.published else {}
    given, shape = resolve_params(spec, None, None, with_params)
    expanded = REGISTRY.expand(spec, given, tuple(shape))
    model = zoo.build(name, device="meta", **with_params)
    for convention in ("pytorch", "keras"):
        assert count_expanded(expanded, convention=convention) == zoo.count_params(model, convention=convention)


def test_catalog_never_builds_and_a_warm_listing_loads_neither_torch_nor_pydantic(
    arch_dir: Writer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import zoo._builder
    from zoo._catalog import catalog

    arch_dir("tiny.yaml", "name: tiny\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 10, source: s}\nlayers: [dense: 2]\n")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("zoo list must not build a model")

    monkeypatch.setattr(zoo._builder, "build_network", refuse)
    result = catalog()
    assert not result.problems
    counts = {r.name: r.params for r in result.rows}
    assert counts["tiny"] == 10 and counts["mnist_cnn_v1"] == 95082 and counts["resnet50_keras"] == 25_636_712
    code = (
        "import sys; from zoo._catalog import catalog; rows = catalog().rows; "
        "print(len(rows), sorted(m for m in ('torch', 'pydantic', 'yaml', 'zoo._schema') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert int(out[0]) == len(result.rows) and out[1].strip() == "[]"  # rows from the disk cache


def test_zoo_list_reports_each_broken_file_and_lists_the_rest(arch_dir: Writer) -> None:
    arch_dir("good.yaml", "name: good\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 10, source: s}\nlayers: [dense: 2]\n")
    arch_dir("bad_yaml.yaml", "name: bad_yaml\nlayers: [dense: 2\n")
    arch_dir("bad_layer.yaml", "name: bad_layer\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 1, source: s}\nlayers: [dnese: 2]\n")
    arch_dir("no_name.yaml", "description: d\n")
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "[gm]*"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    listed = {line.split()[0] for line in out.stdout.splitlines()[1:]}
    assert listed == set(zoo.list_models("[gm]*")) and {"good", "mnist_cnn_v1"} <= listed  # the pattern limits rows, not errors
    errors = out.stderr.splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
    assert any("bad_yaml.yaml:3:1: invalid YAML" in e for e in errors)
    assert any("bad_layer.yaml:6:" in e and "dnese" in e for e in errors)
    assert any("no_name.yaml:1:1:" in e and "'name'" in e for e in errors)


def test_zoo_list_json_and_pretrained() -> None:
    run = [sys.executable, "-m", "zoo", "list", "--json"]
    rows = json.loads(subprocess.run(run, capture_output=True, text=True, check=True).stdout)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(zoo.list_models())
    assert by_name["resnet50"]["params"] == 25_557_032 and by_name["resnet50"]["pretrained"] == ["torchvision"]
    assert by_name["mnist_cnn_v1"]["convention"] == "keras" and by_name["mnist_cnn_v1"]["matches"] is True
    rows = json.loads(subprocess.run([*run, "--pretrained"], capture_output=True, text=True, check=True).stdout)
    names = {r["name"] for r in rows}
    assert {"resnet50", "inception_v4", "xception"} <= names and not names & {"mnist_cnn_v1", "resnet50_keras"}
    assert all(r["pretrained"] for r in rows)


# ---------------------------------------------------------------- hostile folders (issue 11)

def test_a_rewrite_keeping_mtime_and_size_is_seen(arch_dir: Writer) -> None:
    import os

    from zoo._catalog import catalog

    text = "name: same_size\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 10, source: s}\nlayers: [dense: 2]\n"
    path = arch_dir("s.yaml", text)
    assert zoo.count_params(zoo.build("same_size")) == 10
    assert [r.params for r in catalog("same_size").rows] == [10]
    before = path.stat()
    path.write_text(text.replace("dense: 2", "dense: 3"))  # 15 parameters, same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_mtime_ns, path.stat().st_size) == (before.st_mtime_ns, before.st_size)
    assert zoo.count_params(zoo.build("same_size")) == 15
    assert [r.params for r in catalog("same_size").rows] == [15]


def test_links_fifos_and_devices_in_a_registered_folder_break_nothing(arch_dir: Writer, tmp_path: Path) -> None:
    import os

    good = arch_dir("good.yaml", "name: good\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 10, source: s}\nlayers: [dense: 2]\n")
    folder = good.parent
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    (folder / "dangling.yaml").symlink_to(tmp_path / "missing.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.yaml")
    (folder / ".#good.yaml").symlink_to("user@host.1234")  # an editor's lock file: ignored
    assert "good" in zoo.list_models() and "mnist_cnn_v1" in zoo.list_models()
    assert zoo.count_params(zoo.build("mnist_cnn_v1")) == 95082
    assert zoo.count_params(zoo.build("good")) == 10
    problems = {Path(p.file or "").name: str(p) for p in REGISTRY.problems()}
    assert set(problems) == {"loop.yaml", "dangling.yaml", "zero.yaml", "fifo.yaml"}
    assert "not a regular file" in problems["fifo.yaml"] and "not a regular file" in problems["zero.yaml"]
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "good"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "good" in out.stdout and len(out.stderr.splitlines()) == 4


def test_reading_stops_at_the_limit_and_never_blocks(tmp_path: Path) -> None:
    import os

    from zoo._files import MAX_BYTES

    os.mkfifo(tmp_path / "fifo.yaml")
    for path in (tmp_path / "fifo.yaml", Path("/dev/zero")):
        with pytest.raises(zoo.SchemaError, match="not a regular file"):
            load_yaml(path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_BYTES + 10))
    with pytest.raises(zoo.SchemaError, match="larger than"):
        load_yaml(big)


def test_files_deleted_and_recreated_while_eight_threads_list_and_build(arch_dir: Writer) -> None:
    text = "name: churn\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 10, source: s}\nlayers: [dense: 2]\n"
    path = arch_dir("churn.yaml", text)
    stop = threading.Event()
    unexpected: list[BaseException] = []
    shipped: list[int] = []

    def churn() -> None:
        while not stop.is_set():
            path.unlink()
            path.write_text(text)

    def work() -> None:
        for _ in range(15):
            try:
                zoo.list_models()
                shipped.append(zoo.count_params(zoo.build("mnist_cnn_v1", device="meta")))
                zoo.build("churn", device="meta")
            except zoo.ZooError:
                pass  # the churned file may be missing or half-written at that instant: a ZooError is right
            except BaseException as exc:  # anything else (FileNotFoundError) fails the test below
                unexpected.append(exc)

    churner = threading.Thread(target=churn)
    churner.start()
    workers = [threading.Thread(target=work) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    churner.join()
    assert not unexpected, repr(unexpected[:3])
    assert shipped == [95082] * len(shipped) and shipped


def test_zoo_path_naming_a_missing_folder_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOO_PATH", str(tmp_path / "nonexistent"))
    with pytest.raises(zoo.RegistryError, match="ZOO_PATH names .*nonexistent.* not a directory"):
        zoo.list_models()
    out = subprocess.run([sys.executable, "-m", "zoo", "list"], capture_output=True, text=True)
    assert out.returncode != 0 and "ZOO_PATH" in out.stderr and "Traceback" not in out.stderr


def test_unknown_name_suggests_a_case_difference_and_checks_types() -> None:
    with pytest.raises(zoo.UnknownNameError, match="did you mean 'mnist_cnn_v1'"):
        zoo.build("MNIST_CNN_V1")
    with pytest.raises(zoo.RegistryError, match="glob string"):
        zoo.list_models(5)  # type: ignore[arg-type]


def test_duplicate_names_break_only_the_duplicated_model(arch_dir: Writer) -> None:
    body = "description: d\nsource: s\ninput: [4]\npublished: {params: 10, source: s}\nlayers: [dense: 2]\n"
    arch_dir("a.yaml", "name: twice\n" + body)
    arch_dir("b.yaml", "name: twice\n" + body)
    assert "twice" in zoo.list_models()
    with pytest.raises(zoo.RegistryError, match="defined twice"):
        zoo.build("twice")
    assert zoo.count_params(zoo.build("mnist_cnn_v1")) == 95082


def test_a_long_extends_chain_resolves_without_recursion(arch_dir: Writer) -> None:
    depth = 1500
    arch_dir("c0.yaml", "name: c0\ndescription: d\nsource: s\ninput: [4]\nparams: {units: 2}\n"
                        "published: {params: 10, source: s}\nlayers: [dense: '${units}']\n")
    for i in range(1, depth):
        arch_dir(f"c{i}.yaml", f"name: c{i}\nextends: c{i - 1}\npublished: {{params: 10, source: s}}\n")
    assert zoo.count_params(zoo.build(f"c{depth - 1}", device="meta")) == 10


@pytest.mark.parametrize("text, name", [
    ("name: plain\n", "plain"),
    ("name: 'quoted'  # comment\n", "quoted"),
    ('name: "dq"\r\n', "dq"),
    ("{name: flow, description: d}\n", "flow"),  # no plain top-level line: parsed to find out
    ("name:\n  on_next_line\n", "on_next_line"),
    ("description: |\n  name: inside_a_string\nname: real\n", "real"),
    ("---\nname: after_marker\n", "after_marker"),
])
def test_header_scan_agrees_with_yaml(text: str, name: str, tmp_path: Path) -> None:
    from zoo._registry import Registry

    path = tmp_path / "h.yaml"
    path.write_text(text)
    registry = Registry()
    registry.register_dir(tmp_path)
    assert name in registry.list_models()
    assert load_yaml(path)["name"] == name


def test_header_scan_of_every_shipped_file_matches_its_parse() -> None:
    from zoo._headers import scan_header

    for path in builtin_dir().rglob("*.yaml"):
        header, raw = scan_header(path.read_bytes()), load_yaml(path)
        assert header is not None, path  # shipped files are listed without parsing
        assert (header.name, header.abstract, header.extends) == (raw.get("name"), raw.get("abstract", False), raw.get("extends")), path


def test_a_damaged_count_cache_is_recounted_and_rewritten(arch_dir: Writer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from zoo import _catalog

    arch_dir("tiny.yaml", "name: tiny\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 10, source: s}\nlayers: [dense: 2]\n")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_catalog, "_CACHE", _catalog._Cache())
    _catalog.catalog("tiny")
    cache = _catalog.cache_file()
    rows = json.loads(cache.read_text())["rows"]
    for key in rows:  # rows of the wrong shape (another version, a hand edit) are counted again
        rows[key] = {**rows[key], "params": "many"} if "params" in rows[key] else rows[key]
    cache.write_text(json.dumps({"version": 1, "rows": rows}))
    monkeypatch.setattr(_catalog, "_CACHE", _catalog._Cache())
    assert [r.params for r in _catalog.catalog("tiny").rows] == [10]
    cache.write_text("{not json")
    monkeypatch.setattr(_catalog, "_CACHE", _catalog._Cache())
    assert [r.params for r in _catalog.catalog("tiny").rows] == [10]  # a damaged file is recounted
    assert json.loads(cache.read_text())["version"] == 1


def test_library_blocks_are_collected_only_when_a_model_uses_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model of primitives and its own blocks builds without parsing the library files; one that
    uses a library block gets them, and a file's own block wins over a library block of that name."""
    from zoo._registry import Registry

    registry = Registry()
    collected: list[int] = []
    real = Registry._collect_blocks

    def counting(self: Registry) -> dict[str, object]:
        collected.append(1)
        return real(self)  # type: ignore[return-value]

    monkeypatch.setattr(Registry, "_collect_blocks", counting)
    own = registry.get_spec("mnist_fast_net")
    registry.expand(own, {}, tuple(own.input))
    assert collected == []
    assert "conv_pool_bn" in own.blocks and registry.files.index.libraries
    spec = registry.get_spec("resnet50")  # its bottleneck blocks come from a library file
    assert not spec.blocks
    registry.expand(spec, {}, (3, 64, 64))
    assert collected == [1] and "bottleneck" in registry.blocks()
    registry.expand(spec, {}, (3, 96, 96))
    assert collected == [1]  # collected once per registry state
