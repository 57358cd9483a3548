"""Native parsers built for the field, measured against ``ast.parse`` and against ruff's whole
``ruff check`` run, on the candidate files corral itself parses (issue 14).

The candidates are taken from corral's own cold run (``--strict``, no cache, one process):
every text its engine hands to the parser is recorded, so the prefilter decides exactly as in
``corral check``. Each repetition runs every stage once over all candidates (in a rotated
order) and one ``ruff check --no-cache`` of the whole corpus, so load falls on all of them
alike; the medians of ``--repeat`` repetitions (>= 5 for a report) are printed as in-process
CPU and wall time, with the load average, as ratios to ``ast.parse`` and to ruff's CPU and
wall time. The collector is off in every stage, as in corral's engine.

Stages: ``ast.parse``; ``ast.parse`` + a visit of every node (the Python walk corral's
resolver at least does); ``ast.parse`` + corral's resolver (today's parse and resolution);
``compile()`` to bytecode (CPython's C parser with no Python AST objects, a reference);
tree-sitter parse only; tree-sitter parse + a TreeCursor visit of every node reading its type;
tree-sitter parse + one Query for imports, calls, attributes, assignment targets and class
bases, reading each capture's text; ast_serialize (ruff's parser as mypy ships it) to bytes;
ast_serialize + decoding into mypy's nodes; the same + a visit of every node from Python
(their compiled attributes: mypy's traverser cannot be subclassed from Python); LibCST's
native parser (``parse_module``).

Then the soundness checks: which candidates each parser rejects (``ast.parse`` accepts them
all or corral reports CRL901), a table of syntax cases whose CPython verdict is known for
3.11-3.14 (the 3.11 column is checked against this interpreter when it is 3.11), the stdlib's
intentionally bad files where this install has them, and hypothesmith-generated modules.

Optional packages (one line says which is missing; its stages are skipped):
  pip install tree-sitter tree-sitter-python ast-serialize mypy hypothesmith

Run: python benchmarks/native_parser.py [--repeat N] [--corpus stdlib|third-party|both]
     [--skip STAGE ...] [--samples N] [--no-soundness]
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcorpus import DEFAULT_CACHE, loadavg, median, ruff, ruff_config, run, stdlib, third_party

os.environ.setdefault("LIBCST_PARSER_TYPE", "native")  # read by libcst at import

Source = tuple[str, str]  # (path, text)
Stage = Callable[[list[Source]], set[str]]  # returns the paths it could not parse
RULES: list[Any] = []  # the project's RuleSet, once candidates() has loaded it

OPTIONAL = {
    "tree_sitter": "tree-sitter",
    "tree_sitter_python": "tree-sitter-python",
    "ast_serialize": "ast-serialize",
    "mypy": "mypy",
    "libcst": "libcst",
    "hypothesmith": "hypothesmith",
}


def missing(*modules: str) -> list[str]:
    return [OPTIONAL[m] for m in modules if importlib.util.find_spec(m) is None]


# -- the candidates ---------------------------------------------------------------------------


def candidates(target: Path, work: Path) -> tuple[list[Source], int]:
    """Every (path, text) corral's cold strict run parses, and the number of files it saw."""
    from corral.lint_rules import engine
    from corral.lint_rules.commandline import collect_findings
    from corral.lint_rules.project import load_project

    project_dir = work / "project"
    project_dir.mkdir(exist_ok=True)
    (project_dir / "pyproject.toml").write_text("[tool.corral]\n")
    project = load_project(
        project_dir / "pyproject.toml", start=project_dir, overrides={"strict": True}
    )
    RULES[:] = [project.rules]  # the resolver stage resolves with the same (strict) rules
    seen: dict[str, str] = {}
    real = engine.parse

    def recording(text: str, filename: str = "<unknown>") -> Any:
        seen[filename] = text
        return real(text, filename)

    engine.parse = recording  # type: ignore[assignment]
    try:
        _, files = collect_findings(project, [target], use_cache=False, jobs=1)
    finally:
        engine.parse = real
    return sorted(seen.items()), files


# -- the stages -------------------------------------------------------------------------------


def _ast_parse(text: str, path: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def stage_ast(sources: list[Source]) -> set[str]:
    bad = set()
    for path, text in sources:
        if _ast_parse(text, path) is None:
            bad.add(path)
    return bad


def stage_ast_walk(sources: list[Source]) -> set[str]:
    bad = set()
    children = ast.iter_child_nodes
    for path, text in sources:
        tree = _ast_parse(text, path)
        if tree is None:
            bad.add(path)
            continue
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            _ = type(node)  # what a resolver dispatches on
            stack.extend(children(node))
    return bad


def stage_ast_resolver(sources: list[Source]) -> set[str]:
    from corral.lint_rules.packages import package_of
    from corral.lint_rules.resolver import Resolver
    from corral.lint_rules.source import deep_recursion

    rules = RULES[0]
    bad = set()
    for path, text in sources:
        tree = _ast_parse(text, path)
        if tree is None:
            bad.add(path)
            continue
        with deep_recursion():
            Resolver(rules, text, package_of(path), None).run(tree)
    return bad


def _ts_parser() -> Any:
    import tree_sitter
    import tree_sitter_python

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_python.language()))


def stage_ts(sources: list[Source]) -> set[str]:
    parse = _ts_parser().parse
    bad = set()
    for path, text in sources:
        if parse(text.encode("utf-8", "surrogatepass")).root_node.has_error:
            bad.add(path)
    return bad


def stage_ts_walk(sources: list[Source]) -> set[str]:
    parse = _ts_parser().parse
    bad = set()
    for path, text in sources:
        tree = parse(text.encode("utf-8", "surrogatepass"))
        if tree.root_node.has_error:
            bad.add(path)
        cursor = tree.walk()
        while True:
            _ = cursor.node.type  # what a resolver dispatches on
            if cursor.goto_first_child():
                continue
            while not cursor.goto_next_sibling():
                if not cursor.goto_parent():
                    break
            else:
                continue
            break
    return bad


TS_QUERY = """
(import_statement) @import
(import_from_statement) @import
(call function: (_) @call)
(attribute) @attribute
(assignment left: (_) @target)
(augmented_assignment left: (_) @target)
(function_definition name: (identifier) @definition)
(class_definition name: (identifier) @definition superclasses: (_)? @bases)
"""


def stage_ts_query(sources: list[Source]) -> set[str]:
    import tree_sitter
    import tree_sitter_python

    language = tree_sitter.Language(tree_sitter_python.language())
    parse = tree_sitter.Parser(language).parse
    query = tree_sitter.Query(language, TS_QUERY)
    bad = set()
    for path, text in sources:
        tree = parse(text.encode("utf-8", "surrogatepass"))
        if tree.root_node.has_error:
            bad.add(path)
        for nodes in tree_sitter.QueryCursor(query).captures(tree.root_node).values():
            for node in nodes:
                _ = node.text  # the spelling a resolver compares
    return bad


def _mypy_options() -> Any:
    from mypy.options import Options

    return Options()


def _serialize_errors(errors: list[dict[str, Any]]) -> bool:
    return any(e.get("blocker", True) for e in errors)


def stage_serialize(sources: list[Source]) -> set[str]:
    from mypy.nativeparse import parse_to_binary_ast

    options = _mypy_options()
    bad = set()
    for path, text in sources:
        _, errors, *_ = parse_to_binary_ast(path, options, text)
        if _serialize_errors(errors):  # type: ignore[arg-type]
            bad.add(path)
    return bad


def _mypy_statements(sources: list[Source], bad: set[str]) -> Iterator[list[Any]]:
    """Each file through ast_serialize and mypy's compiled decoder: its statements, with
    the files it rejects added to ``bad``."""
    from mypy.cache import ReadBuffer, read_int
    from mypy.nativeparse import State, native_parse, read_statements

    options = _mypy_options()
    for path, text in sources:
        node, errors, _ = native_parse(path, options, text)
        if _serialize_errors(errors):  # type: ignore[arg-type]
            bad.add(path)
        data = ReadBuffer(node.raw_data.defs)
        yield read_statements(State(options), data, read_int(data))


def stage_serialize_decode(sources: list[Source]) -> set[str]:
    bad: set[str] = set()
    for _statements in _mypy_statements(sources, bad):
        pass
    return bad


_SKIP = frozenset(("__match_args__", "line", "column", "end_line", "end_column"))
_FIELDS: dict[type, tuple[str, ...]] = {}


def _mypy_fields(kind: type) -> tuple[str, ...]:
    found = _FIELDS.get(kind)
    if found is None:
        names = getattr(kind, "__mypyc_attrs__", ())
        found = _FIELDS[kind] = tuple(n for n in names if n not in _SKIP)
    return found


def stage_serialize_visit(sources: list[Source]) -> set[str]:
    from mypy.nodes import Node

    bad: set[str] = set()
    for statements in _mypy_statements(sources, bad):
        stack: list[Any] = list(statements)
        while stack:  # mypy's nodes have no child iterator: their compiled attributes
            item = stack.pop()
            for name in _mypy_fields(type(item)):
                value = getattr(item, name, None)
                if isinstance(value, Node):
                    stack.append(value)
                elif isinstance(value, list):
                    stack.extend(v for v in value if isinstance(v, Node))
    return bad


def stage_compile(sources: list[Source]) -> set[str]:
    """CPython's own C parser, symbol table and code generator with no Python AST objects
    built: a reference for how much of ast.parse is building those objects."""
    bad = set()
    for path, text in sources:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile(text, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            bad.add(path)
    return bad


def stage_libcst(sources: list[Source]) -> set[str]:
    import libcst

    bad = set()
    for path, text in sources:
        try:
            libcst.parse_module(text)
        except (libcst.ParserSyntaxError, RecursionError, ValueError):
            bad.add(path)
    return bad


STAGES: dict[str, tuple[Stage, tuple[str, ...]]] = {
    "ast.parse": (stage_ast, ()),
    "ast.parse + visit every node": (stage_ast_walk, ()),
    "ast.parse + corral resolver": (stage_ast_resolver, ()),
    "compile() to bytecode, no AST objects": (stage_compile, ()),
    "tree-sitter parse": (stage_ts, ("tree_sitter", "tree_sitter_python")),
    "tree-sitter + cursor visit": (stage_ts_walk, ("tree_sitter", "tree_sitter_python")),
    "tree-sitter + query": (stage_ts_query, ("tree_sitter", "tree_sitter_python")),
    "ast_serialize to bytes": (stage_serialize, ("ast_serialize", "mypy")),
    "ast_serialize + mypy nodes": (stage_serialize_decode, ("ast_serialize", "mypy")),
    "ast_serialize + nodes + visit all": (stage_serialize_visit, ("ast_serialize", "mypy")),
    "libcst native parse": (stage_libcst, ("libcst",)),
}
SHORT = {
    "ast": "ast.parse",
    "ast-walk": "ast.parse + visit every node",
    "resolver": "ast.parse + corral resolver",
    "compile": "compile() to bytecode, no AST objects",
    "ts": "tree-sitter parse",
    "ts-walk": "tree-sitter + cursor visit",
    "ts-query": "tree-sitter + query",
    "serialize": "ast_serialize to bytes",
    "serialize-decode": "ast_serialize + mypy nodes",
    "serialize-visit": "ast_serialize + nodes + visit all",
    "libcst": "libcst native parse",
}


def available_stages(skip: list[str]) -> list[str]:
    names = []
    told: set[str] = set()
    for name, (_, modules) in STAGES.items():
        if name in skip:
            continue
        absent = missing(*modules)
        if absent:
            key = " ".join(absent)
            if key not in told:
                told.add(key)
                print(f"native_parser: {key} not installed (pip install {key}): stages skipped")
            continue
        names.append(name)
    return names


def timed(stage: Stage, sources: list[Source]) -> tuple[float, float, set[str]]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        bad = stage(sources)
        return time.perf_counter() - wall, time.process_time() - cpu, bad
    finally:
        if enabled:
            gc.enable()


def bench(name: str, target: Path, repeat: int, work: Path, stages: list[str]) -> None:
    sources, files = candidates(target, work)
    size = sum(len(text.encode("utf-8", "surrogatepass")) for _, text in sources)
    config = ruff_config(work)
    ruff_cmd = [ruff(), "check", "--config", str(config), "--no-cache", "--exit-zero", str(target)]
    for stage in stages:  # warm: imports, query compilation, first-use costs
        timed(STAGES[stage][0], sources[:20])
    run(ruff_cmd, work)
    times: dict[str, list[tuple[float, float]]] = {s: [] for s in [*stages, "ruff"]}
    rejected: dict[str, set[str]] = {}
    load_before = loadavg()
    for rep in range(repeat):
        order = stages[rep % len(stages) :] + stages[: rep % len(stages)]
        for stage in order:
            spent_wall, spent_cpu, bad = timed(STAGES[stage][0], sources)
            times[stage].append((spent_wall, spent_cpu))
            rejected[stage] = bad
        r = run(ruff_cmd, work)
        times["ruff"].append((r.wall, r.cpu))

    def wall(key: str) -> float:
        return median([t[0] for t in times[key]])

    def cpu(key: str) -> float:
        return median([t[1] for t in times[key]])

    print(
        f"== {name}: {target}: {len(sources)} candidates of {files} files "
        f"({size / 1e6:.1f} MB), {repeat} interleaved repetitions"
    )
    print(f"   load average before {load_before}, after {loadavg()}")
    print(
        f"   ruff check (whole corpus, all threads): {wall('ruff'):6.3f}s wall "
        f"{cpu('ruff'):6.3f}s CPU; the 2.0x target leaves corral {2 * cpu('ruff'):.3f}s CPU"
    )
    base = cpu("ast.parse") if "ast.parse" in stages else None
    print(
        f"   {'stage (candidates only, one process)':38s} {'CPU s':>7s} {'wall s':>7s} "
        f"{'/ast.parse':>10s} {'/ruff CPU':>9s} {'/ruff wall':>10s} {'rejects':>7s}"
    )
    for stage in stages:
        vs_ast = f"{cpu(stage) / base:9.2f}x" if base else f"{'-':>10s}"
        print(
            f"   {stage:38s} {cpu(stage):7.3f} {wall(stage):7.3f} {vs_ast} "
            f"{cpu(stage) / cpu('ruff'):8.2f}x {wall(stage) / wall('ruff'):9.2f}x "
            f"{len(rejected[stage]):7d}"
        )
    reference = rejected.get("ast.parse", set())
    for stage in stages:
        wrong = sorted(rejected[stage] - reference)
        lenient = sorted(reference - rejected[stage])
        if wrong:
            print(f"   {stage}: rejects {len(wrong)} candidates ast.parse accepts, e.g.")
            for path in wrong[:5]:
                print(f"     {path}")
        if lenient:
            print(f"   {stage}: accepts {len(lenient)} candidates ast.parse rejects")


# -- soundness --------------------------------------------------------------------------------

# (label, source, first CPython version whose parser accepts it; None: none of 3.11-3.14).
# The versions follow each release's "What's New" grammar changes; the 3.11 column is checked
# against ast.parse when this interpreter is 3.11.
CASES: list[tuple[str, str, str | None]] = [
    ("py2 print statement", 'print "x"\n', None),
    ("py2 exec statement", 'exec "x = 1"\n', None),
    ("py2 backticks", "x = `1`\n", None),
    ("py2 <> operator", "if 1 <> 2: pass\n", None),
    ("py2 octal literal", "x = 0777\n", None),
    ("py2 long literal", "x = 10L\n", None),
    ("py2 ur'' prefix", "x = ur'a'\n", None),
    ("py2 tuple parameter", "def f(a, (b, c)): pass\n", None),
    ("py2 except E, e (a tuple from 3.14)", "try:\n    pass\nexcept E, e:\n    pass\n", "3.14"),
    ("py2 raise E, v", "raise E, 'v'\n", None),
    ("async as a name", "async = 1\n", None),
    ("await as a name", "await = 1\n", None),
    ("assign to a call", "f() = 1\n", None),
    ("delete a call", "del f()\n", None),
    ("augmented assign to a tuple", "(a, b) += 1\n", None),
    ("assign to a literal", "1 = x\n", None),
    ("walrus on an attribute", "(a.b := 1)\n", None),
    ("unparenthesised generator argument", "f(a for a in b, c)\n", None),
    ("keyword before **kwargs unpack", "f(**k, *a)\n", None),
    ("positional after keyword", "f(a=1, b)\n", None),
    ("non-default after default", "def f(a=1, b): pass\n", None),
    ("bare * without names", "def f(*, **k): pass\n", None),
    ("incomplete conditional", "x = 1 if y\n", None),
    ("comprehension with else", "x = [i for i in y if i else 0]\n", None),
    ("unclosed paren", "f(1, 2\n", None),
    ("unexpected indent", "x = 1\n    y = 2\n", None),
    ("missing indent", "if x:\npass\n", None),
    ("dedent mismatch", "if x:\n    pass\n  else:\n    pass\n", None),
    ("tabs after spaces", "if x:\n        a = 1\n\tb = 2\n", None),
    ("mapping pattern with rest first", "match x:\n    case {**r, 'k': v}: pass\n", None),
    (
        "two starred in sequence pattern (compile error)",
        "match x:\n    case [*a, *b]: pass\n",
        "3.11",
    ),
    ("invalid f-string conversion", "f'{x!z}'\n", None),
    ("empty f-string expression", "f'{}'\n", None),
    ("invalid numeric underscore", "x = 1__0\n", None),
    ("trailing numeric underscore", "x = 1_\n", None),
    ("unknown \\N name", "x = '\\N{NO SUCH NAME}'\n", None),
    ("truncated \\x escape", "x = '\\x4'\n", None),
    ("non-ASCII in bytes literal", "x = b'\u00e9'\n", None),
    ("invalid character", "\u20ac = 1\n", None),
    ("NUL byte", "x = 1\x00\n", None),
    ("201 nested parentheses", "x = " + "(" * 201 + "1" + ")" * 201 + "\n", None),
    ("lambda with annotation", "lambda x: int: x\n", None),
    ("star expression as statement (compile error)", "*a\n", "3.11"),
    # valid in every version measured
    ("NFKC identifier", "\ufb01 = 1\nprint(fi)\n", "3.11"),
    ("return at module level (a compile error only)", "return 1\n", "3.11"),
    ("await at module level (a compile error only)", "await x\n", "3.11"),
    ("nonlocal at module level (a compile error only)", "nonlocal x\n", "3.11"),
    ("parenthesised context managers", "with (open(a) as b, open(c) as d): pass\n", "3.11"),
    ("match statement", "match p:\n    case Point(x=0, y=y) | [y, *_]: pass\n", "3.11"),
    ("match as a name", "match = 1\nmatch.x = 2\n", "3.11"),
    ("except*", "try:\n    pass\nexcept* ValueError:\n    pass\n", "3.11"),
    ("f-string =", "f'{x=!r:>10}'\n", "3.11"),
    ("star in index", "a[*b]\n", "3.11"),
    ("star in for target list", "for x in *a, *b: pass\n", "3.11"),
    # PEP 701 (3.12)
    ("f-string reusing its quote", "f'{'a'}'\n", "3.12"),
    ("f-string backslash in expression", "f'{\"\\n\".join(a)}'\n", "3.12"),
    ("f-string comment in expression", "f'''{x # note\n}'''\n", "3.12"),
    ("f-string nested 5 deep", "f'{f'{f'{f'{f'{x}'}'}'}'}'\n", "3.12"),
    # PEP 695 (3.12), PEP 696 (3.13)
    ("type alias statement", "type X[T] = list[T]\n", "3.12"),
    ("generic function", "def f[T: int, *Ts, **P](x: T) -> T: ...\n", "3.12"),
    ("generic class", "class C[T]: pass\n", "3.12"),
    ("type parameter default", "def f[T = int](): pass\n", "3.13"),
    # PEP 758, PEP 750 (3.14)
    ("except without parentheses", "try:\n    pass\nexcept A, B:\n    pass\n", "3.14"),
    ("template string", "t'x {y}'\n", "3.14"),
]
VERSIONS = ("3.11", "3.12", "3.13", "3.14")


def _accepts_ast(text: str) -> bool:
    return _ast_parse(text, "<case>") is not None


def verdicts() -> dict[str, Callable[[str], bool]]:
    """Each available parser's "accepts this text" (no error node, no error, no exception)."""
    found: dict[str, Callable[[str], bool]] = {"ast.parse": _accepts_ast}
    if not missing("tree_sitter", "tree_sitter_python"):
        parse = _ts_parser().parse
        found["tree-sitter"] = lambda t: (
            not parse(t.encode("utf-8", "surrogatepass")).root_node.has_error
        )
    if not missing("ast_serialize", "mypy"):
        from mypy.nativeparse import parse_to_binary_ast

        options = _mypy_options()

        def serialize(text: str) -> bool:
            try:
                errors = parse_to_binary_ast("case.py", options, text)[1]
            except Exception:
                return False
            return not _serialize_errors(errors)  # type: ignore[arg-type]

        found["ast_serialize"] = serialize
    if not missing("libcst"):
        import libcst

        def cst(text: str) -> bool:
            try:
                libcst.parse_module(text)
            except Exception:
                return False
            return True

        found["libcst"] = cst
    return found


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def interpreters() -> dict[str, str]:
    """A CPython for each of VERSIONS that is installed here (on PATH or under pyenv)."""
    found = {}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for v in VERSIONS:
        exe = next((str(p) for p in sorted(pyenv.glob(f"{v}.*/bin/python{v}"))), None)
        exe = exe or shutil.which(f"python{v}")
        if exe is not None and "shims" not in Path(exe).parts:  # a shim may select nothing
            found[v] = exe
    return found


ACCEPTS = """
import ast, json, sys, warnings
warnings.simplefilter("ignore")
out = []
for text in json.load(sys.stdin):
    try:
        ast.parse(text)
        out.append(True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        out.append(False)
json.dump(out, sys.stdout)
"""


def cpython_accepts(exe: str, texts: list[str]) -> list[bool]:
    """That interpreter's ``ast.parse`` verdict on each text (corral's reference parser)."""
    import json
    import subprocess

    done = subprocess.run(
        [exe, "-c", ACCEPTS],
        input=json.dumps(texts, ensure_ascii=True),
        capture_output=True,
        text=True,
        check=True,
    )
    return [bool(x) for x in json.loads(done.stdout)]


def soundness_cases(parsers: dict[str, Callable[[str], bool]], found: dict[str, str]) -> None:
    others = [p for p in parsers if p != "ast.parse"]
    texts = [text for _, text, _ in CASES]
    measured = {v: cpython_accepts(exe, texts) for v, exe in found.items()}
    shown = " ".join(f"{v}{'*' if v in measured else ' '}" for v in VERSIONS)
    print(
        f"== syntax cases ({len(CASES)}): Y accepts, - rejects; CPython columns with * are "
        f"that version's ast.parse here, the others as documented"
    )
    print(f"   {'case':46s} {shown}  " + " ".join(f"{p[:13]:>13s}" for p in others))
    lenient: dict[str, list[str]] = {p: [] for p in others}
    strict: dict[str, list[str]] = {p: [] for p in others}
    for i, (label, text, since) in enumerate(CASES):
        expected = []
        for v in VERSIONS:
            documented = since is not None and _version(v) >= _version(since)
            if v in measured and measured[v][i] != documented:
                print(f"   !! {label}: CPython {v} disagrees with the documented verdict")
            expected.append(measured[v][i] if v in measured else documented)
        row = " ".join(f"{'Y' if e else '-':>5s}" for e in expected)
        got = {p: parsers[p](text) for p in others}
        for p, ok in got.items():
            if ok and not any(expected):
                lenient[p].append(label)
            if not ok and any(expected):
                strict[p].append(label)
        cells = " ".join(f"{'Y' if got[p] else '-':>13s}" for p in others)
        print(f"   {label[:46]:46s} {row}  {cells}")
    for p in others:
        print(f"   {p}: accepts {len(lenient[p])} that 3.11-3.14 all reject: {lenient[p]}")
        print(f"   {p}: rejects {len(strict[p])} that one of 3.11-3.14 accepts: {strict[p]}")


GRAMMAR_FILES = (
    "test/test_grammar.py",
    "test/test_patma.py",
    "test/test_fstring.py",
    "test/test_except_star.py",
    "test/test_type_params.py",
    "test/test_type_aliases.py",
    "test/test_syntax.py",
    "test/test_unparse.py",
)


def _decoded(data: bytes) -> str:
    """As corral decodes a file (its declared encoding); undecodable bytes replaced."""
    from corral.lint_rules.source import Unreadable, decode

    text = decode(data)
    return data.decode("utf-8", "replace") if isinstance(text, Unreadable) else text


def soundness_files(parsers: dict[str, Callable[[str], bool]], found: dict[str, str]) -> None:
    """Each installed CPython's grammar test files (valid for that version) and its
    intentionally bad files (test/badsyntax_*.py, lib2to3/tests/data), judged by that
    version's ast.parse against each parser."""
    import subprocess

    others = [p for p in parsers if p != "ast.parse"]
    print("== CPython's own grammar tests and intentionally bad files")
    for v, exe in found.items():
        query = "import sysconfig; print(sysconfig.get_paths()['stdlib'])"
        root = Path(
            subprocess.run([exe, "-c", query], capture_output=True, text=True).stdout.strip()
        )
        paths = [root / name for name in GRAMMAR_FILES if (root / name).is_file()]
        paths += sorted(root.glob("test/badsyntax_*.py"))
        paths += sorted(root.glob("lib2to3/tests/data/*.py"))
        texts = [_decoded(p.read_bytes()) for p in paths]
        verdict = cpython_accepts(exe, texts)
        agree = {p: 0 for p in others}
        for path, text, ok in zip(paths, texts, verdict, strict=True):
            got = {p: parsers[p](text) for p in others}
            for p in others:
                agree[p] += got[p] == ok
            if any(g != ok for g in got.values()):
                cells = " ".join(f"{p}={'Y' if got[p] else '-'}" for p in others)
                print(f"   {v} {path.relative_to(root)}: CPython={'Y' if ok else '-'} {cells}")
        print(f"   {v}: {len(paths)} files; agree with CPython {v}: {agree}")


def soundness_generated(parsers: dict[str, Callable[[str], bool]], samples: int) -> None:
    if samples <= 0:
        return
    absent = missing("hypothesmith")
    if absent:
        print("native_parser: hypothesmith not installed (pip install hypothesmith): skipped")
        return
    import hypothesmith
    from hypothesis import HealthCheck, given, settings

    disagree: dict[str, list[str]] = {p: [] for p in parsers if p != "ast.parse"}
    seen = [0, 0]

    @settings(
        max_examples=samples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(hypothesmith.from_grammar())
    def check(text: str) -> None:
        seen[0] += 1
        accepted = _accepts_ast(text)
        seen[1] += accepted
        for p in disagree:
            if parsers[p](text) != accepted:
                disagree[p].append(text)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check()
    print(f"== hypothesmith from_grammar(): {seen[0]} modules, ast.parse accepts {seen[1]}")
    for p, texts in disagree.items():
        print(f"   {p}: disagrees with ast.parse on {len(texts)}")
        for text in texts[:3]:
            print(f"     {text[:100]!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--corpus", choices=["stdlib", "third-party", "both"], default="both")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="wheel cache")
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(SHORT), help="stages")
    parser.add_argument("--samples", type=int, default=200, help="hypothesmith modules")
    parser.add_argument("--no-soundness", action="store_true")
    args = parser.parse_args()
    stages = available_stages([SHORT[s] for s in args.skip])
    work = Path(tempfile.mkdtemp(prefix="corral-native-"))
    try:
        if args.corpus in ("stdlib", "both"):
            bench("stdlib", stdlib(), args.repeat, work, stages)
        if args.corpus in ("third-party", "both"):
            bench("third-party", third_party(args.cache), args.repeat, work, stages)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_soundness:
        parsers = verdicts()
        found = interpreters()
        soundness_cases(parsers, found)
        soundness_files(parsers, found)
        soundness_generated(parsers, args.samples)


if __name__ == "__main__":
    main()
