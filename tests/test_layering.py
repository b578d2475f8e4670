"""The package's layering, read from its source: a module's imports tell the truth.

Every module of the package is parsed (ast, nothing is imported) and its imports of the package's own
modules are collected, counting imports inside functions and ``importlib.import_module("twoclocks...")``
calls. The test then checks:

- no import cycles between modules (Tarjan's strongly connected components over the module graph; an
  import of ``twoclocks.a.b`` also runs the package ``twoclocks.a``, so it counts as an edge to both,
  except to the importing module's own enclosing packages);
- no private (underscore) name imported from another module (``from twoclocks.x import _y``, or
  ``x._y`` on a module imported from the package);
- no cycles between layers either: the same graph with each subpackage (``twoclocks.probes``, ...) and
  each top-level module as one node, so ``probes -> plotting -> probes`` through different modules
  counts;
- imports of package modules inside functions only where they avoid a heavy optional dependency
  (``LAZY_OK``: plotting needs matplotlib and seaborn, which importing the rest must not pay for).

Run as a script (``python tests/test_layering.py``) it prints the counts and the cycles.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root is the package `twoclocks`
PKG = "twoclocks"
SKIP_DIRS = {"tests", "benchmarks", "examples", "docs", "build", "dist"}

# Modules that may be imported inside functions (a target listed here covers its submodules), each
# with why: its import costs a heavy dependency that the importing module's other users must not pay.
LAZY_OK = {
    "twoclocks.plotting": "matplotlib and seaborn (plotting is optional for computing cubes)",
}


@dataclass
class Import:
    importer: str
    target: str  # a module of the package
    names: tuple[str, ...] = ()  # names taken from it (from-imports)
    lazy: bool = False  # inside a function (or class body of a function)
    line: int = 0


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)
    private: list[tuple[str, str, int]] = field(default_factory=list)  # (importer, "module.name", line)

    def edges(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            own = set(_ancestors(imp.importer))
            for t in (imp.target, *_ancestors(imp.target)):
                if t != imp.importer and t not in own and t in self.modules:
                    out[imp.importer].add(t)
        return out

    def lazy(self) -> list[Import]:
        return [i for i in self.imports if i.lazy]

    def layer_edges(self) -> dict[str, set[str]]:
        """The module graph with each layer (a subpackage, or a top-level module) as one node; the root
        package (it holds only the version and the error class) is left out."""
        out: dict[str, set[str]] = {layer(m): set() for m in self.modules if m != PKG}
        for a, targets in self.edges().items():
            for b in targets:
                if a != PKG and b != PKG and layer(a) != layer(b):
                    out[layer(a)].add(layer(b))
        return out


def layer(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def _ancestors(mod: str) -> list[str]:
    parts = mod.split(".")
    return [".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file for every module of the package (tests, benchmarks and examples are not in it)."""
    mods = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP_DIRS or any(p.startswith(".") for p in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            if not all((root / Path(*parts[:k]) / "__init__.py").exists() for k in range(1, len(parts) + 1)):
                continue
        elif not all((root / Path(*parts[:k]) / "__init__.py").exists() for k in range(1, len(parts))):
            continue
        mods[".".join([PKG, *parts])] = path
    return mods


class _Visitor(ast.NodeVisitor):
    def __init__(self, graph: Graph, module: str, is_pkg: bool):
        self.g, self.mod, self.is_pkg = graph, module, is_pkg
        self.depth = 0  # function nesting
        self.aliases: dict[str, str] = {}  # local name -> package module it names

    def _resolve_from(self, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        base = self.mod.split(".") if self.is_pkg else self.mod.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def _add(self, target: str, names=(), line=0):
        mods = self.g.modules
        while target not in mods and "." in target:  # `import twoclocks.x.attr` style: the enclosing module
            target = target.rsplit(".", 1)[0]
        if target in mods:
            self.g.imports.append(Import(self.mod, target, tuple(names), self.depth > 0, line))

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.Import):
        for a in node.names:
            if a.name == PKG or a.name.startswith(PKG + "."):
                self._add(a.name, line=node.lineno)
                if a.asname:
                    self.aliases[a.asname] = a.name
                elif "." not in a.name:
                    self.aliases[a.name] = a.name

    def visit_ImportFrom(self, node: ast.ImportFrom):
        base = self._resolve_from(node)
        if not base or not (base == PKG or base.startswith(PKG + ".")):
            return
        plain = []
        for a in node.names:
            sub = f"{base}.{a.name}"
            if sub in self.g.modules:  # `from twoclocks.probes import clocks`: the submodule
                self._add(sub, line=node.lineno)
                self.aliases[a.asname or a.name] = sub
            else:
                plain.append(a.name)
                if a.name.startswith("_") and not a.name.startswith("__"):
                    self.g.private.append((self.mod, f"{base}.{a.name}", node.lineno))
        if plain or not node.names:
            self._add(base, plain, line=node.lineno)

    def visit_Attribute(self, node: ast.Attribute):
        # `clocks._helper` where `clocks` names a package module imported here
        if isinstance(node.value, ast.Name) and node.value.id in self.aliases:
            target = self.aliases[node.value.id]
            if node.attr.startswith("_") and not node.attr.startswith("__") and target != self.mod:
                self.g.private.append((self.mod, f"{target}.{node.attr}", node.lineno))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and node.args[0].value.startswith(PKG):
            self._add(node.args[0].value, line=node.lineno)
        self.generic_visit(node)


def build_graph(root: Path = ROOT) -> Graph:
    g = Graph(modules=module_files(root))
    for mod, path in g.modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        _Visitor(g, mod, path.name == "__init__.py").visit(tree)
    return g


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components with more than one node
    (or a node with an edge to itself)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop(); on.discard(w); comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in edges.get(v, ()):
                        out.append(comp)
    return out


def _lazy_ok(target: str) -> bool:
    return any(target == m or target.startswith(m + ".") for m in LAZY_OK)


def violations(g: Graph):
    cycles = strongly_connected(g.edges()) + strongly_connected(g.layer_edges())
    private = sorted({(i, n) for i, n, _ in g.private})
    lazy = sorted({(i.importer, i.target) for i in g.lazy() if not _lazy_ok(i.target)})
    return cycles, private, lazy


# --- the checker itself, on small made-up packages ------------------------------------------------------

def _write(root: Path, files: dict[str, str]):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_checker_finds_hidden_cycles_private_names_and_lazy_imports(tmp_path):
    _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from twoclocks.b import f\n",
        "b.py": "def f():\n    from twoclocks import a\n    return a._g\n",  # hidden cycle + private attr
        "c.py": "import importlib\ndef h():\n    return importlib.import_module('twoclocks.d')\n",
        "d.py": "from twoclocks.c import h\nfrom .e import _private\n",  # cycle via importlib, private
        "e.py": "_private = 1\n",
        "p/__init__.py": "from twoclocks.p.q import x\n",
        "p/q.py": "x = 1\nfrom twoclocks import e\n",  # a submodule importing its parent: no cycle
        "tests/test_z.py": "from twoclocks.a import _nothing\n",  # not part of the package
    })
    g = build_graph(tmp_path)
    assert set(g.modules) == {"twoclocks", "twoclocks.a", "twoclocks.b", "twoclocks.c", "twoclocks.d",
                              "twoclocks.e", "twoclocks.p", "twoclocks.p.q"}
    cycles = strongly_connected(g.edges())
    assert sorted(map(sorted, cycles)) == [["twoclocks.a", "twoclocks.b"], ["twoclocks.c", "twoclocks.d"]]
    assert sorted((i, n) for i, n, _ in g.private) == [("twoclocks.b", "twoclocks.a._g"),
                                                      ("twoclocks.d", "twoclocks.e._private")]
    assert sorted((i.importer, i.target) for i in g.lazy()) == [("twoclocks.b", "twoclocks.a"),
                                                               ("twoclocks.c", "twoclocks.d")]
    assert strongly_connected(g.layer_edges()) == [{"twoclocks.a", "twoclocks.b"}, {"twoclocks.c", "twoclocks.d"}]


def test_checker_finds_cycles_between_layers(tmp_path):
    """No cycle between modules, one between their subpackages: s.x -> t.y -> s.z."""
    _write(tmp_path, {"__init__.py": "", "s/__init__.py": "", "t/__init__.py": "",
                      "s/x.py": "from twoclocks.t.y import f\n", "t/y.py": "from twoclocks.s import z\nf = 1\n",
                      "s/z.py": "", "u.py": "from twoclocks.s.x import f\n"})
    g = build_graph(tmp_path)
    assert strongly_connected(g.edges()) == []
    assert strongly_connected(g.layer_edges()) == [{"twoclocks.s", "twoclocks.t"}]


def test_tarjan_against_brute_force_reachability():
    import random
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 9)
        nodes = [str(i) for i in range(n)]
        edges = {v: {w for w in nodes if rng.random() < 0.2} for v in nodes}
        reach = {v: set() for v in nodes}
        for v in nodes:  # brute force: depth-first reachability from each node
            todo = list(edges[v])
            while todo:
                w = todo.pop()
                if w not in reach[v]:
                    reach[v].add(w); todo.extend(edges[w])
        expect = {frozenset({v} | {w for w in reach[v] if v in reach[w]}) for v in nodes if v in reach[v]}
        assert {frozenset(c) for c in strongly_connected(edges)} == expect


# --- the package ----------------------------------------------------------------------------------------

def test_the_package_is_parsed_whole():
    g = build_graph()
    for mod in ("twoclocks", "twoclocks.cli", "twoclocks.run", "twoclocks.probes.registry",
                "twoclocks.sweep.runner", "twoclocks.plotting.figures", "twoclocks.training.train"):
        assert mod in g.modules
    assert not any(".tests" in m or ".benchmarks" in m or ".examples" in m for m in g.modules)
    assert len(g.imports) > 100


def test_no_import_cycles():
    cycles, _, _ = violations(build_graph())
    assert not cycles, "import cycles (counting imports inside functions): " + "; ".join(
        "{" + ", ".join(sorted(c)) + "}" for c in cycles)


def test_no_private_names_across_modules():
    _, private, _ = violations(build_graph())
    assert not private, "private names used across modules (make them public or move them): " + ", ".join(
        f"{i} uses {n}" for i, n in private)


def test_imports_inside_functions_only_for_heavy_optional_dependencies():
    _, _, lazy = violations(build_graph())
    assert not lazy, ("imports of package modules inside functions (move them to the top; LAZY_OK lists the "
                      "modules that may be imported late): " + ", ".join(f"{i} -> {t}" for i, t in lazy))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    g = build_graph(Path(args[0]) if args else ROOT)
    lazy = g.lazy()
    print(f"modules: {len(g.modules)}  imports of package modules: {len(g.imports)}")
    print(f"inside functions: {len(lazy)} ({sum(not _lazy_ok(i.target) for i in lazy)} outside LAZY_OK)")
    print(f"private names across modules: {len(g.private)} uses, {len({n for _, n, _ in g.private})} names")
    for c in strongly_connected(g.edges()):
        print("cycle:", "{" + ", ".join(sorted(c)) + "}")
    for c in strongly_connected(g.layer_edges()):
        print("layer cycle:", "{" + ", ".join(sorted(c)) + "}")
    if "-v" in sys.argv:
        for i in lazy:
            print(f"  lazy {i.importer}:{i.line} -> {i.target} {i.names}")
        for i, n, line in g.private:
            print(f"  private {i}:{line} {n}")
