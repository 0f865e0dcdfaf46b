"""A static check for unsafe deserialization and dynamic code in fitq's sources.

It walks each module's AST and resolves every call's dotted name through the
module's imports (``import torch as t`` → ``t.load`` is ``torch.load``; ``import
safetensors.torch`` → ``safetensors.torch.load`` is *not* ``torch.load``), then
applies the rules below. A name that no import binds is left as written, so a
local variable called ``torch`` is not mistaken for the module.

Rules (``Finding.rule``):

- ``pickle-import``: importing pickle, _pickle, cPickle, shelve, dill or cloudpickle;
- ``pickle-load``: ``pickle.load``/``loads`` (or ``Unpickler``), ``marshal.load``/``loads``,
  ``shelve.open``;
- ``allow-pickle``: any call passing ``allow_pickle=`` anything but the literal ``False``;
- ``torch-load``: ``torch.load`` (or ``torch.serialization.load``) without the literal
  ``weights_only=True``;
- ``yaml-load``: ``yaml.load``/``load_all`` without a safe loader (``SafeLoader``,
  ``CSafeLoader``, ``BaseLoader``), and ``yaml.unsafe_load``/``full_load`` always;
- ``eval-exec``: the builtins ``eval`` and ``exec`` (a method such as ``model.eval()`` is fine).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PICKLE_MODULES = frozenset({"pickle", "_pickle", "cPickle", "shelve", "dill", "cloudpickle"})
UNSAFE_LOADS = frozenset(
    {
        "pickle.load",
        "pickle.loads",
        "pickle.Unpickler",
        "_pickle.load",
        "_pickle.loads",
        "cPickle.load",
        "cPickle.loads",
        "dill.load",
        "dill.loads",
        "cloudpickle.load",
        "cloudpickle.loads",
        "marshal.load",
        "marshal.loads",
        "shelve.open",
    }
)
TORCH_LOADS = frozenset({"torch.load", "torch.serialization.load"})
YAML_LOADS = frozenset({"yaml.load", "yaml.load_all"})
YAML_ALWAYS_UNSAFE = frozenset(
    {"yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all"}
)
SAFE_YAML_LOADERS = frozenset(
    {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}
)
DYNAMIC_CODE = frozenset({"eval", "exec", "builtins.eval", "builtins.exec"})


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.code}"


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str):
        self.path = path
        self.aliases: dict[str, str] = {}  # local name → dotted name it is bound to
        self.findings: list[Finding] = []

    # -- imports: what each local name means -----------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in PICKLE_MODULES:
                self._add(node, "pickle-import")
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:  # `import a.b` binds `a`
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.split(".")[0] in PICKLE_MODULES:
            self._add(node, "pickle-import")
        for alias in node.names:
            if alias.name in PICKLE_MODULES and module in ("", "."):
                self._add(node, "pickle-import")
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}".lstrip(".")

    # -- calls ------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualified(node.func)
        if name in UNSAFE_LOADS:
            self._add(node, "pickle-load")
        if name in TORCH_LOADS and not _keyword_is(node, "weights_only", True):
            self._add(node, "torch-load")
        if name in YAML_ALWAYS_UNSAFE:
            self._add(node, "yaml-load")
        if name in YAML_LOADS and not self._safe_yaml_loader(node):
            self._add(node, "yaml-load")
        if name in DYNAMIC_CODE:  # a bare eval/exec no import rebinds, or builtins.*
            self._add(node, "eval-exec")
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not _is_constant(kw.value, False):
                self._add(node, "allow-pickle")
        self.generic_visit(node)

    def qualified(self, node: ast.expr) -> str | None:
        """The dotted name of ``node`` with its root resolved through the imports."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        root = self.aliases.get(node.id, node.id)
        return ".".join([root, *reversed(parts)])

    def _safe_yaml_loader(self, node: ast.Call) -> bool:
        loader: ast.expr | None = None
        if len(node.args) >= 2:
            loader = node.args[1]
        for kw in node.keywords:
            if kw.arg == "Loader":
                loader = kw.value
        return loader is not None and self.qualified(loader) in SAFE_YAML_LOADERS

    def _add(self, node: ast.AST, rule: str) -> None:
        code = ast.unparse(node).splitlines()[0][:120]
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), rule, code))


def _is_constant(node: ast.expr, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _keyword_is(node: ast.Call, name: str, value: object) -> bool:
    return any(kw.arg == name and _is_constant(kw.value, value) for kw in node.keywords)


def scan_source(source: str, path: str = "<snippet>") -> list[Finding]:
    """Every finding in one module's source."""
    checker = _Checker(path)
    checker.visit(ast.parse(source, filename=path))
    return checker.findings


def python_files(root: Path, folders: Iterable[str]) -> Iterator[Path]:
    """``*.py`` under each folder, plus extension-less scripts whose shebang runs python."""
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if path.suffix == ".py" or (path.suffix == "" and _python_shebang(path)):
                yield path


def _python_shebang(path: Path) -> bool:
    with open(path, "rb") as f:
        first = f.readline(200)
    return first.startswith(b"#!") and b"python" in first


def scan_tree(root: Path, folders: Iterable[str]) -> tuple[list[Path], list[Finding]]:
    """The files scanned and every finding in them."""
    files = list(python_files(root, folders))
    findings: list[Finding] = []
    for path in files:
        findings += scan_source(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return files, findings
