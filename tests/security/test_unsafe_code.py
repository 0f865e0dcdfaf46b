"""No unsafe deserialization or dynamic code in fitq's sources, by construction:
the AST check of ``tests/security/unsafe_code.py`` over service/, worker/,
bench/ and scripts/, and known-bad snippets that prove the check can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.unsafe_code import scan_source, scan_tree

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("service", "worker", "bench", "scripts")

BAD = [
    ("import pickle", "pickle-import"),
    ("import _pickle as p", "pickle-import"),
    ("from pickle import loads", "pickle-import"),
    ("import shelve", "pickle-import"),
    ("import dill", "pickle-import"),
    ("import pickle\npickle.loads(b'')", "pickle-load"),
    ("import pickle as p\np.load(f)", "pickle-load"),
    ("from pickle import load as l\nl(f)", "pickle-load"),
    ("import marshal\nmarshal.loads(b'')", "pickle-load"),
    ("import shelve\nshelve.open('x')", "pickle-load"),
    ("import numpy as np\nnp.load(f, allow_pickle=True)", "allow-pickle"),
    ("import numpy as np\nnp.load(f, allow_pickle=flag)", "allow-pickle"),
    ("np.lib.format.read_array(f, allow_pickle=1)", "allow-pickle"),
    ("import torch\ntorch.load(f)", "torch-load"),
    ("import torch\ntorch.load(f, weights_only=False)", "torch-load"),
    ("import torch\ntorch.load(f, weights_only=flag)", "torch-load"),
    ("import torch as t\nt.load(f)", "torch-load"),
    ("from torch import load\nload(f)", "torch-load"),
    ("from torch import serialization\nserialization.load(f)", "torch-load"),
    ("import yaml\nyaml.load(s)", "yaml-load"),
    ("import yaml\nyaml.load(s, Loader=yaml.Loader)", "yaml-load"),
    ("import yaml\nyaml.load(s, yaml.UnsafeLoader)", "yaml-load"),
    ("import yaml\nyaml.unsafe_load(s)", "yaml-load"),
    ("import yaml\nyaml.full_load(s)", "yaml-load"),
    ("from yaml import load\nload(s)", "yaml-load"),
    ("eval('1 + 1')", "eval-exec"),
    ("exec('x = 1')", "eval-exec"),
    ("import builtins\nbuiltins.eval('1')", "eval-exec"),
]

GOOD = [
    "import safetensors.torch\nsafetensors.torch.load(data)",
    "import safetensors.torch as st\nst.load(data)",
    "from safetensors.torch import load\nload(data)",
    "from safetensors.torch import load_file\nload_file(path)",
    "import torch\ntorch.load(f, weights_only=True)",
    "import numpy as np\nnp.load(f, allow_pickle=False)",
    "import numpy as np\nnp.load(f)",
    "import yaml\nyaml.safe_load(s)",
    "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.load(s, yaml.CSafeLoader)",
    "import json\njson.loads(s)",
    "model.eval()",
    "torch.compile(model)",
    "x = pickled_thing\nx.load()",
]


@pytest.mark.parametrize(("source", "rule"), BAD)
def test_the_checker_catches_each_known_bad_snippet(source: str, rule: str) -> None:
    rules = [f.rule for f in scan_source(source)]
    assert rule in rules, f"{source!r} was not flagged as {rule} (got {rules})"


@pytest.mark.parametrize("source", GOOD)
def test_the_checker_passes_safe_code(source: str) -> None:
    assert scan_source(source) == []


def test_fitq_sources_have_no_unsafe_deserialization_or_eval() -> None:
    files, findings = scan_tree(ROOT, SCANNED)
    names = {str(p.relative_to(ROOT)) for p in files}
    # The tree really was walked: the modules that read client bytes are in it.
    assert {"service/datasets/npz.py", "service/api/upload.py", "worker/engine/model.py"} <= names
    assert any(n.startswith("bench/") for n in names)
    assert findings == [], "unsafe code:\n" + "\n".join(map(str, findings))
