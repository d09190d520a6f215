"""``zoo list`` on a cold cache (issue 13): the counting path never imports torch, and what makes it
fast (libyaml's parser events, memoized specs and block expansions) gives exactly what the slow
path gives: the same node trees, the same expanded trees, the same errors at the same places."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import zoo
from zoo import _combinators, _expansion
from zoo._errors import Location, ZooError
from zoo._registry import REGISTRY
from zoo._tree import SeqArgs, leaves
from zoo._values import resolve_params
from zoo._yaml import _check_flow_depth, _compiled_composable, _compose, parse_yaml

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "zoo_tests" / "bad_inputs").glob("*.yaml"))
SHIPPED = sorted((ROOT / "architectures").rglob("*.yaml")) + sorted((ROOT / "recipes").rglob("*.yaml"))


def test_cold_zoo_list_counts_every_model_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from zoo._catalog import catalog; result = catalog(); "
        "counts = {r.name: r.params for r in result.rows}; "
        "print(len(counts), counts['mnist_cnn_v1'], counts['resnet50'], counts['efficientnet_b0'], len(result.problems), "
        "sorted(m for m in ('torch', 'torchvision', 'zoo._modules', 'zoo._network', 'zoo._builder') if m in sys.modules))"
    )
    env = {**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "empty"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split(" ", 5) == [str(len(zoo.list_models())), "95082", "25557032", "5288548", "0", "[]\n"]
    assert (tmp_path / "empty" / "catalog.json").is_file()  # and the rows were cached for the next listing


def test_reserved_layer_names_cover_what_torch_defines() -> None:
    """The names written out in ``_module_attrs`` (so that expansion needs no torch) include every
    attribute of the modules the builder emits, with the installed torch."""
    from zoo._module_attrs import RESERVED_NAMES

    # a fresh interpreter: torch.compile and torch.export patch attributes onto nn.Module at run time
    # ('___needs_generation_tag_patch'), which are not part of what a torch release defines
    code = "from zoo._network import Aux, Network; print(*sorted(set(dir(Aux({}, None))) | set(dir(Network({})))))"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    missing = set(names) - RESERVED_NAMES
    assert not missing, f"add to zoo/_module_attrs.py: {sorted(missing)}"
    assert {"training", "forward", "state_dict", "aux_names", "append"} <= RESERVED_NAMES


# ---------------------------------------------------------------- YAML: libyaml events, PyYAML's tree

def _tree(node: yaml.Node, seen: dict[int, int] | None = None) -> Any:
    """A node tree as comparable data: kind, tag, value and start position of every node (the
    scalar style is left out: libyaml says '' where PyYAML says None for a plain scalar). A node
    met again (an alias) is its first visit's number, so an alias bomb stays small."""
    seen = {} if seen is None else seen
    if id(node) in seen:
        return ("alias", seen[id(node)])
    seen[id(node)] = len(seen)
    mark = (node.start_mark.line, node.start_mark.column)
    if isinstance(node, yaml.ScalarNode):
        return ("scalar", node.tag, node.value, mark)
    if isinstance(node, yaml.SequenceNode):
        return ("seq", node.tag, mark, [_tree(n, seen) for n in node.value])
    return ("map", node.tag, mark, [(_tree(k, seen), _tree(v, seen)) for k, v in node.value])


def _outcome(compose: Any, text: str) -> Any:
    try:
        node = compose(text)
    except RecursionError:  # parse_yaml reports it in its own words, whichever composer recursed
        return ("error", "RecursionError")
    except yaml.YAMLError as exc:
        return ("error", type(exc).__name__, str(exc))
    return None if node is None else _tree(node)


def _pure(text: str) -> Any:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _mutations(texts: list[str], count: int, seed: int) -> Iterator[str]:
    """Texts with a few characters inserted, repeated or deleted: YAML's syntax characters, tabs
    and line breaks, where the two parsers are most likely to part ways."""
    rnd = random.Random(seed)
    chars = list(" \n\t:-[]{},#&*!|>'\"%@`?0a.\\")
    for _ in range(count):
        text = rnd.choice(texts)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(text) + 1)
            op = rnd.random()
            if op < 0.4:
                text = text[:i] + rnd.choice(chars) + text[i:]
            elif op < 0.7:
                text = text[:i] + text[i + rnd.randint(1, 4):]
            else:
                text = text[:i] + rnd.choice(chars) * rnd.randint(1, 3) + text[i:]
        yield text


def _composed(text: str) -> bool:
    """Whether parse_yaml composes the text at all (flow nesting past the limit is refused first)."""
    try:
        _check_flow_depth(text, "f.yaml")
    except zoo.SchemaError:
        return False
    return True


def test_fast_composer_gives_pyyamls_tree_for_every_shipped_and_corpus_file() -> None:
    texts = {p.name: p.read_bytes().decode("utf-8", errors="replace") for p in SHIPPED + CORPUS}
    texts = {name: text for name, text in texts.items() if _composed(text)}
    assert len(texts) > 300
    for name, text in texts.items():
        assert _outcome(_compose, text) == _outcome(_pure, text), name


def test_fast_composer_agrees_with_pyyaml_on_mutated_files() -> None:
    """Mutated architecture files (1,000 here; 24,000 were checked when this was written): the same
    tree or the same error. Where libyaml is more lenient (tabs, '?', tags, empty flow entries)
    the text must go to PyYAML."""
    texts = [p.read_text() for p in SHIPPED[:40]]
    for text in _mutations(texts, 1000, seed=13):
        assert _outcome(_compose, text) == _outcome(_pure, text), text


@pytest.mark.parametrize("text", ["a: [1,\t2]\n", "a: {b: c?d}\n", "a: [2, !456, 952]\n", "a: [1, , 2]\n", "a: {b: }\n"])
def test_texts_libyaml_reads_otherwise_go_to_pyyaml(text: str) -> None:
    assert _outcome(_compose, text) == _outcome(_pure, text)


# ---------------------------------------------------------------- expansion memos change nothing

def _no_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_expansion._Expander, "_replay", lambda self, key: None)
    monkeypatch.setattr(_expansion, "_SPECS", {})
    monkeypatch.setattr(_expansion, "_MAX_SPECS", 0)  # every spec validated afresh
    monkeypatch.setattr(_combinators, "_args_key", lambda model, raw: None)  # every combinator's arguments too


def _expand(name: str) -> Any:
    spec = zoo.get_spec(name)
    with_params = dict(spec.published.with_params) if spec.published else {}
    given, shape = resolve_params(spec, None, None, with_params)
    return _expansion.expand(spec, REGISTRY.blocks(), given, tuple(shape))


def test_memoized_expansion_equals_the_plain_walk_for_every_model(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = {name: _expand(name) for name in zoo.list_models()}
    _no_replay(monkeypatch)
    for name, tree in fast.items():
        assert _expand(name) == tree, name  # dataclass equality: every leaf, spec, shape, name, location


def test_replayed_blocks_are_copies() -> None:
    """Naming a block's use, or turning off ``inplace`` at a shared input, must not reach the
    other uses of the same expansion (nor the memo)."""
    tree = _expand("resnet50")
    stage = next(item for item in tree.items if item.name == "layer3")
    first, second = stage.parts[0][1], stage.parts[0][2]  # identical bottlenecks: the second is a replay
    assert first == second and first is not second


def _inplace_flags(items: list[Any]) -> list[bool]:
    return [leaf.spec.inplace for leaf in leaves(items) if leaf.primitive.name == "relu"]


def test_protecting_a_shared_input_does_not_reach_other_uses_of_a_replayed_block(tmp_path: Path) -> None:
    """A replay shares its nested items with the first expansion and the memo: the residual that
    turns off the in-place ReLU at its input gets its own copy of the path down to that ReLU."""
    path = tmp_path / "shared.yaml"
    path.write_text(  # 'unit' sits at one place in 'wrapper': its second and third uses are replays
        "name: shared_relu\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 0, source: s}\n"
        "blocks:\n  unit:\n    layers: [{seq: {layers: [relu, {dense: 4}]}}]\n  wrapper:\n    layers: [unit]\n"
        "layers:\n  - wrapper\n  - residual: {body: [wrapper]}\n  - wrapper\n"
    )
    registry = REGISTRY.with_file(path)
    spec = registry.get_spec("shared_relu")
    for _ in range(2):  # the second expansion replays every use from the memo
        tree = _expansion.expand(spec, registry.blocks(), {}, (4,))
        plain, residual, again = tree.items
        assert _inplace_flags([plain]) == [True] and _inplace_flags([again]) == [True]
        assert _inplace_flags(residual.parts[0]) == [False]


def test_the_block_memo_is_shared_by_models_and_gives_their_own_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    """ResNet-101 replays the bottlenecks ResNet-50 expanded (same template, arguments, input
    and use site), and the result equals a walk without any memo."""
    _expansion._REPLAYS.clear()
    _expand("resnet50")
    before = set(_expansion._REPLAYS)
    fast = _expand("resnet101")
    assert len(set(_expansion._REPLAYS) - before) < len(before)  # most of its block uses were there already
    _no_replay(monkeypatch)
    assert _expand("resnet101") == fast


def test_a_block_name_another_file_defines_otherwise_is_not_replayed(tmp_path: Path) -> None:
    """Two files use the same library-like template, whose nested block ``inner`` each file
    defines its own way: the second file's expansion must not replay the first one's."""
    head = "description: d\nsource: s\ninput: [4]\npublished: {params: 0, source: s}\n"
    (tmp_path / "lib.yaml").write_text("kind: blocks\nblocks:\n  outer:\n    params: {width: 1}\n    layers: [inner]\n")
    (tmp_path / "parent.yaml").write_text("name: uses_parent\nabstract: true\n" + head + "layers:\n  - outer: {width: 3}\n")
    for name, units in (("uses_a", 5), ("uses_b", 7)):  # the same use of 'outer' (the parent's), another 'inner'
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nextends: uses_parent\n{head}blocks:\n  inner:\n    layers: [{{dense: {units}}}]\n"
        )
    registry = REGISTRY.with_file(tmp_path / "uses_a.yaml")
    registry.register_dir(tmp_path)
    widths = {}
    for name in ("uses_a", "uses_b", "uses_a"):
        spec = registry.get_spec(name)
        widths[name] = _expansion.expand(spec, registry.blocks(), {}, (4,)).out_shape
    assert widths == {"uses_a": (5,), "uses_b": (7,)}


def _corpus_outcome(path: Path) -> str:
    try:
        registry = REGISTRY.with_file(path)
        name = yaml.safe_load(path.read_text())["name"]
        spec = registry.get_spec(name)
        _expansion.expand(spec, registry.blocks(), {}, tuple(spec.input))
    except ZooError as exc:
        return str(exc)
    except Exception as exc:  # a file the registry cannot even name: compare the exception's kind
        return type(exc).__name__
    return "ok"


@pytest.mark.parametrize("stem", ["arch_repeat_nested_explosion", "arch_blocks_600_nested", "arch_stage_in_block_in_stage_deep",
                                  "arch_block_recursion_without_end", "arch_block_cycle_through_another"])
def test_limits_and_cycles_stop_a_replay_where_they_stop_the_walk(stem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "zoo_tests" / "bad_inputs" / f"{stem}.yaml"
    fast = _corpus_outcome(path)
    _no_replay(monkeypatch)
    assert fast == _corpus_outcome(path) and fast != "ok"


def test_limits_met_inside_replayed_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replays add their layers, work and depth to the totals: the limit is hit at the same layer."""
    text = (
        "name: many_blocks\ndescription: d\nsource: s\ninput: [4]\npublished: {params: 0, source: s}\n"
        "blocks:\n  five:\n    layers: [relu, relu, relu, {seq: {layers: [relu, relu]}}]\n"
        "layers:\n  - repeat: {n: 10000, layers: [five]}\n"
    )
    path = tmp_path / "many_blocks.yaml"
    path.write_text(text)
    fast = _corpus_outcome(path)
    _no_replay(monkeypatch)
    assert fast == _corpus_outcome(path) and "more than 40000 layers" in fast


def test_a_limit_trips_inside_a_block_replayed_from_another_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replays from the shared memo count their layers: a model that repeats the block another
    model expanded first (the same use, in their common parent) still stops at the layer limit,
    with the message of a walk without the memo."""
    head = "description: d\nsource: s\ninput: [4]\npublished: {params: 0, source: s}\n"
    (tmp_path / "parent.yaml").write_text(
        "name: repeats_parent\nabstract: true\n" + head + "params: {n: 3}\n"
        "blocks:\n  five:\n    layers: [relu, relu, relu, {seq: {layers: [relu, relu]}}]\n"
        "layers:\n  - repeat: {n: '${n}', layers: [five]}\n"
    )
    (tmp_path / "small.yaml").write_text("name: small_user\nextends: repeats_parent\n" + head)
    (tmp_path / "big.yaml").write_text("name: big_user\nextends: repeats_parent\n" + head + "params: {n: 10000}\n")
    registry = REGISTRY.with_file(tmp_path / "small.yaml")
    registry.register_dir(tmp_path)
    small, big = registry.get_spec("small_user"), registry.get_spec("big_user")
    assert len(list(leaves(_expansion.expand(small, registry.blocks(), {}, (4,)).items))) == 15

    def outcome() -> str:
        with pytest.raises(zoo.SizeLimitError) as info:
            _expansion.expand(big, registry.blocks(), {}, (4,))
        return str(info.value)

    replayed = outcome()
    assert "more than 40000 layers" in replayed
    _no_replay(monkeypatch)
    assert outcome() == replayed


def test_block_uses_with_equal_values_of_other_types_are_told_apart() -> None:
    """The block memo's key tells 1, 1.0 and true apart, and 0.0 from -0.0, as repr does."""
    keys = {_expansion._scope_key({"a": v}) for v in (1, 1.0, True, 0.0, -0.0, "1", [1], None)}
    assert len(keys) == 8


def test_combinator_arguments_memo_validates_what_the_layer_lists_change() -> None:
    """Arguments that differ only in their layer lists validate alike, except where a list holds a
    boolean (which Strict refuses) or is empty: those are validated for real, with their errors."""
    good = _combinators._args(SeqArgs, {"layers": ["relu"], "name": "a"}, "p", None)
    assert _combinators._args(SeqArgs, {"layers": ["flatten", "relu"], "name": "a"}, "p", None) is good
    with pytest.raises(zoo.SchemaError, match="not a boolean"):
        _combinators._args(SeqArgs, {"layers": ["relu", True], "name": "a"}, "p", None)
    with pytest.raises(zoo.SchemaError, match="at least one"):
        _combinators._args(SeqArgs, {"layers": [], "name": "a"}, "p", None)
    assert _combinators._args(SeqArgs, {"layers": ["relu"], "name": "b"}, "p", None).name == "b"


def test_equal_arguments_of_other_types_are_validated_apart() -> None:
    """The spec memo keys on repr: ``1``, ``1.0`` and ``true`` stay three different arguments."""
    prim = _expansion.PRIMITIVES["dense"]
    assert _expansion._validated(prim, {"units": 3}, "p", None).units == 3
    with pytest.raises(zoo.SchemaError, match="not a boolean"):
        _expansion._validated(prim, {"units": True}, "p", None)
    drop = _expansion.PRIMITIVES["dropout"]
    assert _expansion._validated(drop, {"p": 1}, "p", None) == _expansion._validated(drop, {"p": 1.0}, "p", None)


def test_the_command_line_looks_up_the_version_only_when_asked() -> None:
    """``importlib.metadata`` scans every installed distribution (about 20 ms of each command):
    building the parser must not, and ``--version`` still prints it."""
    code = "import sys; from zoo._cli import _parser; _parser(); print('importlib.metadata' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out == "False\n"
    version = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("zoo ")


def test_the_compiled_composer_takes_plain_files_and_leaves_properties_and_deep_nesting() -> None:
    """Every shipped architecture file goes to libyaml's compiled composer; a tag or an anchor
    (which libyaml may read otherwise) and a text that could nest deeply (the compiled composer
    recurses in C) go to the event composer, and deep nesting still ends in a SchemaError."""
    assert all(_compiled_composable(p.read_text()) for p in SHIPPED if "architectures" in p.parts)
    for text in ("a: !!int 3\n", "a: [!x 3]\n", "a: &x 3\nb: *x\n", "- " * 1001 + "x\n"):
        assert not _compiled_composable(text), text
    assert _compiled_composable("when: ${a != b}\n")  # '!' inside a scalar is no tag
    found: list[bool] = []  # another thread's stack may be small: never there
    thread = threading.Thread(target=lambda: found.append(_compiled_composable("a: 1\n")))
    thread.start()
    thread.join()
    assert found == [False]
    with pytest.raises(zoo.SchemaError, match="nesting deeper"):
        parse_yaml("- " * 50_000 + "x\n")


def test_parsed_locations_are_ordinary_locations() -> None:
    """The parser makes its Locations without the dataclass's __init__: they must compare, hash
    and print as Locations made the ordinary way, and stay frozen."""
    data = parse_yaml("a:\n  - 1\n  - {b: 2}\n", "f.yaml")
    made = data["a"].item_locs[1]
    assert made == Location("f.yaml", 3, 5) and hash(made) == hash(Location("f.yaml", 3, 5))
    assert str(made) == "f.yaml:3:5" and data["a"][1].loc == made and data.key_locs["a"] == Location("f.yaml", 1, 1)
    with pytest.raises(AttributeError):
        made.line = 4  # type: ignore[misc]


def test_only_names_that_passed_are_remembered_as_checked() -> None:
    """A module name that passed is not checked again; one that failed fails at every use."""
    from zoo._tree import _check_name, _name_checked

    _check_name("stage_one", None, "p")
    assert _name_checked("stage_one") and not _name_checked(["stage_one"])
    for _ in range(2):
        with pytest.raises(zoo.SchemaError, match="attribute of torch.nn.Module"):
            _check_name("training", None, "p")
        assert not _name_checked("training")


def test_located_maps_are_ordinary_ymaps() -> None:
    """``located_map`` skips YMap's __init__: the result holds the values, positions and no
    'dyn' (not known), and copies and pickles as a YMap made the ordinary way."""
    import copy
    import pickle

    from zoo._yaml import YMap, located_map

    where = Location("f.yaml", 2, 3)
    made = located_map({"a": 1}, where, {"a": where})
    plain = YMap({"a": 1}, loc=where)
    plain.key_locs = {"a": where}
    for other in (copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert type(other) is YMap and other == plain and other.loc == where and other.key_locs == {"a": where}
    assert made.dyn is None and made == plain
