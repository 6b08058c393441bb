"""The method table (blendrl/methods.py) is the one place a method is defined: every row's script
exists, names its own method id, and has BlendRL Args exactly when the row says so; the launcher
and the plots read their scripts, kinds, labels and BlendRL-ness from it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from blendrl.agents.factory import BlendRLFields, blend_fields
from blendrl.methods import METHOD_INFO, METHOD_TABLE, METHODS, OFFLINE_METHODS, ONLINE_METHODS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("m", METHOD_TABLE, ids=lambda m: m.id)
def test_each_row_is_its_script(m):
    source = (ROOT / m.script).read_text()
    call = re.search(r"main\(cli\((\w+)\), \"(\w+)\"\)", source)
    assert call and call.group(2) == m.id, f"{m.script} does not run method {m.id!r}"
    spec = importlib.util.spec_from_file_location(f"script_{m.id}", ROOT / m.script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the scripts only define things and run under __main__
    args_cls = getattr(module, call.group(1))
    assert issubclass(args_cls, BlendRLFields) == m.blendrl
    assert m.kind in ("online", "offline") and m.label


def test_everyone_reads_the_table():
    from blendrl.launch.config import SCRIPTS
    from blendrl.plotting.collect import BLENDRL_METHODS, METHOD_LABELS

    assert SCRIPTS == {m.id: m.script for m in METHOD_TABLE}
    assert METHOD_LABELS == {m.id: m.label for m in METHOD_TABLE}
    assert BLENDRL_METHODS == {m.id for m in METHOD_TABLE if m.blendrl}
    assert set(ONLINE_METHODS) | set(OFFLINE_METHODS) == set(METHODS) == set(METHOD_INFO)
    with pytest.raises(TypeError, match="BlendRL method"):
        blend_fields("blendrl_ppo", object())
    assert blend_fields("ppo", object()) is None


def test_every_series_of_the_table_has_its_own_style():
    """The figures' styles come from the table: each online method and each (offline method,
    dataset source) pair is drawn in its own colour and line style, none in the fallback grey;
    an offline row has one colour per online method."""
    from blendrl.plotting.series import FALLBACK_STYLE, style_of

    for m in METHOD_TABLE:
        assert len(m.colors) == (1 if m.kind == "online" else len(ONLINE_METHODS)), \
            f"{m.id}: {len(m.colors)} colours (an offline row has one per online method)"
        if m.kind == "online":
            assert m.data_linestyle and m.data_linestyle != "-"
    pairs = [(m, None) for m in ONLINE_METHODS] + \
        [(m, s) for m in OFFLINE_METHODS for s in ONLINE_METHODS]
    styles = {pair: style_of(*pair) for pair in pairs}
    assert FALLBACK_STYLE not in styles.values()
    assert len({(st.color, st.linestyle) for st in styles.values()}) == len(pairs)
    assert len({st.color for st in styles.values()}) == len(pairs)
    assert style_of("ppo", None).linestyle == "-"
    assert style_of("iql", "ppo") == style_of("iql", "ppo")
    assert style_of("iql", "ppo").linestyle == METHOD_INFO["ppo"].data_linestyle
    assert style_of("unknown_method", None) == FALLBACK_STYLE
    assert style_of("iql", "unknown_source") == FALLBACK_STYLE
    assert style_of("iql", None) == FALLBACK_STYLE  # an offline run of unknown data origin
    assert style_of("ppo", "ppo") == FALLBACK_STYLE
