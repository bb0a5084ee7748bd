# eli/engine_options.py: the engine options of eli.LLM / eli.AsyncLLM and the CLI's engine flags,
# all from the one table include/eli/engine_options.def (vLLM's EngineArgs is the pattern: one list
# of fields, from which keywords, validation, docs and flags are derived).
#
# Design: the C++ X-macro file is the only place an option is written; C++ expands it into
# EngineConfig, its validation and the typed binding. Python cannot include it, and `eli --help`
# must work without the compiled module and from an installed wheel (which has no include/), so
# `python -m eli.engine_options` turns the .def into plain data, _engine_options_table.py, committed
# next to this file. Reading data needs no build step, no package-data lookup and no import of
# _eli. Two checks keep the copies equal: tests/python/test_options.py regenerates the module from
# the .def and compares, and check_native() (called at every engine start) compares it with the
# compiled module's _eli.engine_options(), so a stale build fails loudly instead of dropping an
# option.
#
# Invariants: engine_values() returns a value for every option, each of the C++ type and within
# the bounds that validate_engine_config() (runtime/engine/engine_config.cc) checks again; every
# refusal is an InvalidRequestError naming the caller, the option, the value and the bound.
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import pathlib
import re
import sys
from typing import TYPE_CHECKING, Any, Iterable, Optional

if TYPE_CHECKING:
    import argparse

from .errors import EliError, InvalidRequestError

kMaxThreadsPerCpu = 4  # include/eli/engine.h kMaxThreadsPerCpu (check_native compares)
_INT_RANGES = {"I32": (-(2**31), 2**31 - 1), "I64": (-(2**63), 2**63 - 1), "U64": (0, 2**64 - 1),
               "TRI": (-1, 1)}
_KINDS = ("BOOL", "I32", "I64", "U64", "F64", "STR", "TRI")
_LIMITS = ("NONE", "CPU_THREADS", "OPEN_MIN")
_TYPE_NAMES = {"BOOL": "bool", "I32": "int", "I64": "int", "U64": "int", "F64": "float", "STR": "str",
               "TRI": "bool"}


@dataclasses.dataclass(frozen=True)
class Option:
    """One row of engine_options.def."""
    kind: str
    name: str
    default: Any          # the C++ default (what EngineConfig holds when the option is not given)
    min: float
    max: float
    limit: str
    py_default: Any       # the keyword's default in Python (None: the C++ default, "auto")
    choices: tuple
    flag: str             # the CLI flag; "" when the option has none
    group: str            # "model" or "engine" (CLI argument groups)
    doc: str

    @property
    def bounded(self) -> bool:
        return self.kind not in ("BOOL", "STR") and not (self.min == 0 and self.max == 0)

    def max_now(self) -> float:
        """The upper bound on this machine (CPU_THREADS: at most kMaxThreadsPerCpu per CPU)."""
        if self.limit == "CPU_THREADS":
            return min(self.max, kMaxThreadsPerCpu * (os.cpu_count() or 1))
        return self.max

    def bound_text(self) -> str:
        lo = "(" if self.limit == "OPEN_MIN" else "["
        text = f"{lo}{_num(self.min)}, {_num(self.max_now())}]"
        if self.limit == "CPU_THREADS":
            text += f" (at most {kMaxThreadsPerCpu} per hardware thread; this machine has {os.cpu_count() or 1})"
        return text

    def type_text(self) -> str:
        t = _TYPE_NAMES[self.kind]
        return f"{t} | None" if self.py_default is None else t

    def describe_default(self) -> str:
        v = self.py_default
        if isinstance(v, bool):
            return "on" if v else "off"
        return "-" if v is None else str(v)

    def check(self, value: Any, caller: str = "LLM") -> Any:
        """`value` as the C++ field takes it; InvalidRequestError naming the option otherwise."""
        where = f"{caller}(): {self.name}"
        if value is None:
            if self.py_default is None:
                return self.default
            raise InvalidRequestError(f"{where} must be a {_TYPE_NAMES[self.kind]}, got None")
        kind = self.kind
        if kind in ("BOOL", "TRI"):
            if not isinstance(value, (bool, _np_bool())):
                raise InvalidRequestError(f"{where} must be True or False, got {value!r}")
            return int(bool(value)) if kind == "TRI" else bool(value)
        if kind == "STR":
            if not isinstance(value, str):
                raise InvalidRequestError(f"{where} must be a string, got {value!r}")
            if self.choices and not any(_choice_matches(value, c) for c in self.choices):
                raise InvalidRequestError(f"{where} must be one of {', '.join(self.choices)}; got {value[:64]!r}")
            return value
        if kind == "F64":
            if isinstance(value, (bool, _np_bool())) or not isinstance(value, numbers.Real):
                raise InvalidRequestError(f"{where} must be a number, got {value!r}")
            try:
                v = float(value)
            except (OverflowError, ValueError):
                raise InvalidRequestError(f"{where} must be a finite number, got {value!r}") from None
            if not math.isfinite(v):
                raise InvalidRequestError(f"{where} must be a finite number, got {v}")
        else:
            if isinstance(value, (bool, _np_bool())) or not isinstance(value, numbers.Integral):
                raise InvalidRequestError(f"{where} must be an integer, got {value!r}")
            v = int(value)
            lo, hi = _INT_RANGES[kind]
            if not lo <= v <= hi:
                raise InvalidRequestError(f"{where} {v} is out of range [{lo}, {hi}]")
        if not self.bounded or v == self.default:
            return v
        ok_lo = v > self.min if self.limit == "OPEN_MIN" else v >= self.min
        if ok_lo and v <= self.max_now():
            return v
        auto = " or None (the default)" if self.py_default is None else ""
        raise InvalidRequestError(f"{where} must be in {self.bound_text()}{auto}, got {_num(v)}")


def _np_bool():
    np = sys.modules.get("numpy")
    return np.bool_ if np is not None else bool


def _num(x) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    return str(x)


def _choice_matches(value: str, choice: str) -> bool:
    if choice.endswith(":N"):
        prefix = choice[:-1]
        rest = value[len(prefix):]
        return value.startswith(prefix) and 1 <= len(rest) <= 4 and rest.isascii() and rest.isdigit()
    return value == choice


# ---- the table ----------------------------------------------------------------------------------

def _load_options() -> tuple[Option, ...]:
    try:
        from ._engine_options_table import ROWS
    except ImportError:  # bootstrapping: `python -m eli.engine_options` writes it
        return ()
    return tuple(Option(**dict(row, choices=tuple(row["choices"]))) for row in ROWS)


OPTIONS: tuple[Option, ...] = _load_options()
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def engine_values(kwargs: dict, caller: str = "LLM") -> dict:
    """Every option's C++ value: the given keywords checked, the rest their defaults. Unknown
    keywords are InvalidRequestError naming `caller` and the closest option."""
    unknown = [k for k in kwargs if k not in BY_NAME]
    if unknown:
        import difflib  # here, not at import: eli.LLM's import time is part of its cold start

        k = unknown[0]
        close = difflib.get_close_matches(str(k), list(BY_NAME) + ["download", "progress"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidRequestError(f"{caller}() got an unknown keyword argument {k!r}{hint}; the engine options "
                                  f"are: {', '.join(BY_NAME)} (see help(eli.{caller}))")
    return {o.name: o.check(kwargs.get(o.name, o.py_default), caller) for o in OPTIONS}


def engine_config(model: str, values: Optional[dict] = None, caller: str = "engine_config", **options):
    """A typed _eli.EngineConfig for `model`: `values` (from engine_values) or `options` checked
    here. For code that drives _eli.Engine directly (benchmarks); eli.LLM builds its own."""
    from . import _eli

    check_native(_eli)
    config = _eli.EngineConfig()
    config.model = str(model)
    for name, value in (engine_values(options, caller) if values is None else values).items():
        setattr(config, name, value)
    return config


def check_native(native) -> None:
    """EliError when the compiled module was built from another table than this package's."""
    try:
        rows = native.engine_options()
        per_cpu = native.max_threads_per_cpu()
    except AttributeError:
        rows, per_cpu = None, None
    mine = [(o.name, o.kind, o.default, float(o.min), float(o.max), o.limit, "|".join(o.choices), o.doc)
            for o in OPTIONS]
    theirs = None if rows is None else [
        (r["name"], r["kind"], r["default"], r["min"], r["max"], r["limit"], r["choices"], r["doc"]) for r in rows]
    if mine != theirs or per_cpu != kMaxThreadsPerCpu:
        diff = sorted({t[0] for t in mine} ^ {t[0] for t in (theirs or [])})
        raise EliError("the compiled engine (_eli) was built from another engine option table than this Python "
                       f"package{' (options differing: ' + ', '.join(diff) + ')' if diff else ''}; rebuild it "
                       "(pip install -e .), or regenerate the Python table (python -m eli.engine_options)")


# ---- documentation ------------------------------------------------------------------------------

def docstring(indent: str = "    ") -> str:
    """The engine options as a docstring section (name: type = default -- doc [bounds])."""
    lines = ["Engine options (keyword-only; the table is include/eli/engine_options.def):"]
    for o in OPTIONS:
        bound = f" Range {o.bound_text()}." if o.bounded and o.kind != "TRI" else ""
        choices = f" One of {', '.join(o.choices)}." if o.choices else ""
        lines.append(f"{indent}{o.name}: {o.type_text()} = {o.py_default!r} -- {o.doc}.{choices}{bound}")
    return "\n".join(lines)


def signature_parameters() -> list:
    """inspect.Parameter objects (keyword-only, with defaults and types) for the options."""
    import inspect

    types = {"BOOL": bool, "I32": int, "I64": int, "U64": int, "F64": float, "STR": str, "TRI": Optional[bool]}
    out = []
    for o in OPTIONS:
        t = types[o.kind]
        if o.py_default is None and o.kind != "TRI":
            t = Optional[t]
        out.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.py_default, annotation=t))
    return out


# ---- the command line ---------------------------------------------------------------------------

def _arg_type(o: Option):
    import argparse

    def parse(text: str):
        if o.kind == "STR":
            value: Any = text
        elif o.kind == "F64":
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        else:
            try:
                value = int(text, 0)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        try:
            return o.check(value, "eli")
        except InvalidRequestError as e:
            raise argparse.ArgumentTypeError(str(e).replace("eli(): ", "")) from None
    parse.__name__ = o.name  # argparse names the type in "invalid <name> value" messages
    return parse


def add_cli_arguments(model_group, engine_group) -> None:
    """Adds one flag per option (engine_options.def's FLAG column) to the two argparse groups.
    Every flag defaults to None: cli_kwargs() passes only what was given, so the engine's defaults
    apply otherwise (and are printed here)."""
    import argparse

    for o in OPTIONS:
        if not o.flag:
            continue
        g = model_group if o.group == "model" else engine_group
        default = "" if o.py_default is None else f" (default: {o.describe_default()})"
        help_text = (o.doc + default).replace("%", "%%")
        if o.kind == "BOOL" and o.py_default is False:  # a switch: --skip-tokenizer-init
            g.add_argument(o.flag, dest=o.name, action="store_const", const=True, default=None, help=o.doc)
        elif o.kind in ("BOOL", "TRI"):
            g.add_argument(o.flag, dest=o.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = ("{" + ",".join(o.choices) + "}" if o.choices else "X" if o.kind == "F64"
                       else "BYTES" if o.name.endswith("bytes") else "N")
            g.add_argument(o.flag, dest=o.name, type=_arg_type(o), default=None, metavar=metavar, help=help_text)


def cli_kwargs(args: argparse.Namespace) -> dict:
    """The options given on the command line (flags left out are not passed)."""
    return {o.name: getattr(args, o.name) for o in OPTIONS if o.flag and getattr(args, o.name, None) is not None}


# ---- generation of _engine_options_table.py from the .def --------------------------------------

_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z_0-9]*|[0-9][A-Za-z0-9_.]*|'
                    r'<<|[(),\-+]', re.S)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"engine_options.def: unexpected {text[pos:pos + 20]!r}")
        tok = m.group(0)
        pos = m.end()
        if not (tok.isspace() or tok.startswith("//") or tok.startswith("/*")):
            out.append(tok)
    return out


def _number(toks: list[str]):
    import ast
    # Numbers, (1ull << n), "- 1": evaluated with a whitelist of AST nodes.
    expr = " ".join(re.sub(r"(?<=\d)(ull|ULL|ll|LL|u|U|l|L)$", "", t) for t in toks)

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.Sub, ast.Add)):
            a, b = ev(node.left), ev(node.right)
            return a << b if isinstance(node.op, ast.LShift) else (a - b if isinstance(node.op, ast.Sub) else a + b)
        raise ValueError(f"engine_options.def: unsupported expression {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


def _arg(toks: list[str]):
    import ast
    if toks and all(t.startswith('"') for t in toks):
        return ("str", "".join(ast.literal_eval(t) for t in toks))
    if len(toks) == 1 and re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", toks[0]):
        return ("tok", toks[0])
    return ("num", _number(toks))


def parse_def(text: str) -> list[dict]:
    """The rows of engine_options.def as plain dicts (what _engine_options_table.ROWS holds)."""
    toks = _tokens(text)
    rows, i = [], 0
    while i < len(toks):
        if toks[i] != "ELI_ENGINE_OPTION" or i + 1 >= len(toks) or toks[i + 1] != "(":
            raise ValueError(f"engine_options.def: expected ELI_ENGINE_OPTION(, got {toks[i]!r}")
        i += 2
        args, cur, depth = [], [], 0
        while True:
            t = toks[i]
            i += 1
            if t == "(":
                depth += 1
            elif t == ")":
                if depth == 0:
                    args.append(cur)
                    break
                depth -= 1
            elif t == "," and depth == 0:
                args.append(cur)
                cur = []
                continue
            cur.append(t)
        rows.append(_row([_arg(a) for a in args]))
    names = [r["name"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError("engine_options.def: an option is listed twice")
    return rows


def _row(args: list) -> dict:
    if len(args) != 11:
        raise ValueError(f"engine_options.def: an entry has {len(args)} arguments, expected 11: {args!r}")
    (_, kind), (_, name), default, (_, lo), (_, hi), (_, limit), py_default, (_, choices), (_, flag), \
        (_, group), (_, doc) = args
    if kind not in _KINDS or limit not in _LIMITS or group not in ("MODEL", "ENGINE"):
        raise ValueError(f"engine_options.def: bad KIND, LIMIT or GROUP in the entry of {name}")
    d = default[1]
    if kind == "BOOL":
        if d not in ("true", "false"):
            raise ValueError(f"engine_options.def: {name}: a BOOL default is true or false")
        d = d == "true"
    elif kind == "F64":
        d = float(d)
    elif kind != "STR":
        d = int(d)
    if py_default[0] == "tok":
        if py_default[1] not in ("SAME", "NONE"):
            raise ValueError(f"engine_options.def: {name}: PY_DEFAULT is SAME, NONE or a literal")
        pyd = d if py_default[1] == "SAME" else None
    else:
        pyd = py_default[1]
    if flag == "-":
        flag = ""
    elif flag == "":
        flag = "--" + name.replace("_", "-")
    return {"kind": kind, "name": name, "default": d, "min": float(lo) if kind == "F64" else lo,
            "max": float(hi) if kind == "F64" else hi, "limit": limit, "py_default": pyd,
            "choices": [c for c in choices.split("|") if c], "flag": flag, "group": group.lower(), "doc": doc}


def render_table(rows: Iterable[dict]) -> str:
    """The source of _engine_options_table.py."""
    import pprint
    import textwrap

    lines = ["# eli/_engine_options_table.py: GENERATED from include/eli/engine_options.def by",
             "# `python -m eli.engine_options`; do not edit (tests/python/test_options.py checks that it is",
             "# current). Plain data, so that the CLI and its --help need no compiled module.",
             "ROWS = ("]
    for r in rows:
        lines.append(textwrap.indent(pprint.pformat(r, width=100, sort_dicts=False), "    ") + ",")
    lines.append(")")
    return "\n".join(lines) + "\n"


def default_def_path() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[2] / "include" / "eli" / "engine_options.def"


def main(argv: Optional[list] = None) -> int:
    """python -m eli.engine_options [DEF]: rewrites _engine_options_table.py from the .def."""
    args = list(sys.argv[1:] if argv is None else argv)
    src = pathlib.Path(args[0]) if args else default_def_path()
    out = pathlib.Path(__file__).with_name("_engine_options_table.py")
    out.write_text(render_table(parse_def(src.read_text(encoding="utf-8"))), encoding="utf-8")
    print(f"wrote {out} from {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
