"""``zoo list`` on a cold cache (issue 13): the counting path never imports torch, and what makes it
fast (libyaml's parser events, memoized specs and block expansions) gives exactly what the slow
path gives: the same node trees, the same expanded trees, the same errors at the same places."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import zoo
from zoo import _expansion
from zoo._errors import ZooError
from zoo._registry import REGISTRY
from zoo._values import resolve_params
from zoo._yaml import _check_flow_depth, _compose

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
    assert first.parts[0][0] is not second.parts[0][0]


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


def test_equal_arguments_of_other_types_are_validated_apart() -> None:
    """The spec memo keys on repr: ``1``, ``1.0`` and ``true`` stay three different arguments."""
    prim = _expansion.PRIMITIVES["dense"]
    assert _expansion._validated(prim, {"units": 3}, "p", None).units == 3
    with pytest.raises(zoo.SchemaError, match="not a boolean"):
        _expansion._validated(prim, {"units": True}, "p", None)
    drop = _expansion.PRIMITIVES["dropout"]
    assert _expansion._validated(drop, {"p": 1}, "p", None) == _expansion._validated(drop, {"p": 1.0}, "p", None)
