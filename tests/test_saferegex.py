from __future__ import annotations

import contextlib
import itertools
import pickle
import random
import re
import signal
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsconf import saferegex
from vsconf.saferegex import RegexError, compile_pattern

# Characters that exercise the semantics: case pairs, the Kelvin sign and the long s (which
# match k and s under re.IGNORECASE), dotted capital I, a digit, word and space characters.
ALPHABET = "abAB.\n1 _ksK\u212a\u017f\u0130i"
ATOMS = [
    *("a", "b", "A", "k", "s", "1", "_", " ", r"\.", r"\n", "\u212a", "\u017f", "\u0130", "i"),
    *("[ab]", "[^a]", "[a-c]", r"[^\n]", r"[\d_]", "[.]", "[A-Z]", r"[^\W\d]", "[k-s]", r"[\s\S]"),
    *(r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "."),
    *("^", "$", r"\A", r"\Z", r"\b", r"\B", r"\n^", r"^\n", r"\n$", r"$\n"),
]
GROUPS = ["(", "(?:", "(?P<g>", "(?i:", "(?-i:", "(?s:", "(?m:", "(?a:", "(?u:", "(?x:"]
QUANTIFIERS = ["*", "+", "?", "{2}", "{1,}", "{,2}", "{1,3}", "{0}", "*?", "+?", "??", "{1,3}?"]
GLOBAL_FLAGS = ["", "", "", "(?i)", "(?s)", "(?m)", "(?a)", "(?x)", "(?ims)", "(?ai)"]
COMPOSITES = ["sequence", "sequence", "alternation", "group", "repeat"]


def pattern_from(choices: bytes) -> str:
    """A pattern from a small grammar, each choice read from `choices` (0 once they run out):
    hypothesis draws and shrinks bytes far faster than it builds recursive strategies."""
    stream = iter(choices)

    def pick(options: list[str]) -> str:
        return options[next(stream, 0) % len(options)]

    def expression(depth: int) -> str:
        form = pick(COMPOSITES) if depth < 2 else pick(["atom", *COMPOSITES]) if depth < 4 else "atom"
        if form == "atom":
            return pick(ATOMS)
        if form == "sequence":
            return expression(depth + 1) + expression(depth + 1)
        if form == "alternation":
            return expression(depth + 1) + "|" + expression(depth + 1)
        if form == "group":
            return pick(GROUPS) + expression(depth + 1) + ")"
        return f"(?:{expression(depth + 1)}){pick(QUANTIFIERS)}"

    return pick(GLOBAL_FLAGS) + expression(0)


# Every name of up to two characters, and some longer ones: the same names for each pattern.
NAMES = ["", *ALPHABET, *(a + b for a in ALPHABET for b in ALPHABET)]
NAMES += ["".join(random.Random(seed).choices(ALPHABET, k=seed % 6 + 3)) for seed in range(60)]
# Names of dotted segments that repeat, as a model's do; short, as re.fullmatch (the oracle)
# backtracks exponentially in a name's length on some random patterns.
DOTTED = [".".join(random.Random(seed).choices(["a", "ab", "k1", "", "s", "\n"], k=seed % 4 + 2))[:8] for seed in range(40)]


class _OracleTooSlow(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise _OracleTooSlow in the code inside after ``seconds`` (nothing where there is no
    SIGALRM, or off the main thread): CPython checks signals while ``re`` backtracks, so an
    alarm ends a match."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield  # alarms are delivered to the main thread only
        return

    def on_alarm(*_):
        raise _OracleTooSlow

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def oracle(regex: re.Pattern, names: list[str]) -> list[bool | None]:
    """``re.fullmatch``'s answer for each name, None where it backtracks too long to give one.

    On some random patterns re backtracks exponentially in a name's length (nested
    quantifiers around a name it cannot match: ``(?:(?:(?:(?:\\D)??)*?){1,}){1,}`` ran for
    minutes on an 8-character name, where vsconf's matcher takes 0.1 ms); vsconf's answers
    are checked on the names re does answer."""
    try:
        with _time_limit(2.0):
            return [regex.fullmatch(name) is not None for name in names]
    except _OracleTooSlow:
        pass
    answers: list[bool | None] = []
    for name in names:
        try:
            with _time_limit(0.05):
                answers.append(regex.fullmatch(name) is not None)
        except _OracleTooSlow:
            answers.append(None)
    return answers


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=40))
def test_agrees_with_re_fullmatch(choices):
    pattern = pattern_from(choices)
    try:
        regex = re.compile(pattern)
    except re.error as exc:  # then the same syntax error, at the same place
        with pytest.raises(RegexError) as refused:
            compile_pattern(pattern)
        assert (refused.value.message, refused.value.position) == (exc.msg, exc.pos)
        return
    matches = compile_pattern(pattern)
    answers = oracle(regex, NAMES + DOTTED)
    for name, answer in zip(NAMES, answers):
        assert answer is None or matches(name) == answer, (pattern, name)
    # Many names at once, through the literal prefilter, the segment cache and the budget.
    selected = matches.select(NAMES + DOTTED, saferegex.Budget())
    assert [i for i in selected if answers[i] is not None] == [i for i, answer in enumerate(answers) if answer], pattern


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no SIGALRM here: the oracle has no time limit")
def test_the_oracle_gives_up_on_a_name_re_backtracks_on_for_minutes():
    regex = re.compile(r"(?:(?:(?:(?:\D)??)*?){1,}){1,}")
    started = time.perf_counter()
    assert oracle(regex, ["_", "_\n\u017f._\n1i", "1"]) == [True, None, False]
    assert time.perf_counter() - started < 10
    assert compile_pattern(regex.pattern)("_\n\u017f._\n1i") is False


@pytest.mark.parametrize("flags", ["", "(?m)", "(?a)", "(?s)", "(?ms)"])
def test_anchors_agree_with_re_fullmatch(flags):
    """Every anchor between every pair of neighbours, on every short name: exhaustively."""
    neighbours = ["", ".", r"\n", "a", "é", " ", ".*", r"\n?"]
    names = ["".join(chars) for size in range(4) for chars in itertools.product("a é\n", repeat=size)]
    for anchor in ["^", "$", r"\A", r"\Z", r"\b", r"\B"]:
        for left, right in itertools.product(neighbours, repeat=2):
            pattern = flags + left + anchor + right
            matches, regex = compile_pattern(pattern), re.compile(pattern)
            for name in names:
                assert matches(name) == (regex.fullmatch(name) is not None), (pattern, name)


RESNET = r".*(conv\d*|downsample\.0)\.weight"
LAYER = r"layer\d+\.(conv|bn)\d*\.weight"
QKV = r"encoder\.layers\.\d+\.self_attn\.(q|k|v)_proj\.weight"
BLOCKS = r"blocks\.[0-9]{1,2}\.mlp\.fc[12]\.(weight|bias)"


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        (RESNET, "layer1.0.downsample.0.weight", True),
        (RESNET, "layer1.0.conv2.weight", True),
        (RESNET, "conv1.weight", True),
        (RESNET, "layer1.0.downsample.1.weight", False),
        (RESNET, "layer1.0.conv2.weight_orig", False),
        (LAYER, "layer12.conv3.weight", True),
        (LAYER, "layer12.bn.weight", True),
        (LAYER, "layer12.conv3.bias", False),
        (LAYER, "layer1.0.conv1.weight", False),
        (QKV, "encoder.layers.11.self_attn.k_proj.weight", True),
        (QKV, "encoder.layers.11.self_attn.out_proj.weight", False),
        (BLOCKS, "blocks.7.mlp.fc2.bias", True),
        (BLOCKS, "blocks.123.mlp.fc2.bias", False),
        (r"(?i)ENCODER\..*\.WEIGHT", "encoder.layer.0.weight", True),
        (r"^fc\.weight$", "fc.weight", True),
        (r"fc\.weight$", "fc.weight\n", False),  # "$" may sit before a final newline; fullmatch still ends at the end
        (r"(?x) conv \d+ \. weight  # verbose", "conv1.weight", True),
        (r"\bconv\d\b.*", "conv1.weight", True),
        (r".*\Bconv.*", "x.conv1", False),
        ("", "", True),
        ("", "a", False),
    ],
)
def test_tensor_names(pattern, name, expected):
    assert compile_pattern(pattern)(name) is expected
    assert (re.fullmatch(pattern, name) is not None) is expected


@pytest.fixture
def nfa_steps(monkeypatch) -> list[int]:
    """How many times the NFA steps (a cache miss each), counted in ``[0]``."""
    steps = [0]
    step = saferegex._Nfa.step

    def counted(self, *args):
        steps[0] += 1
        return step(self, *args)

    monkeypatch.setattr(saferegex._Nfa, "step", counted)
    return steps


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("(a+)+b", "a" * 5000),
        ("(a|a)*b", "a" * 5000),
        ("(a|aa)*c", "a" * 5000),
        ("(.*a){20}", "a" * 5000 + "b"),
        ("(x+x+)+y", "x" * 5000),
        (".*.*.*.*.*.*.*.*.*.*z", "x" * 5000),
        (r"(\w+\s?)+$", "word " * 1000 + "!"),
        (r"(a*)*(b*)*(a*)*c", "ab" * 2500),
    ],
)
def test_catastrophic_patterns_run_in_one_pass(pattern, name, nfa_steps):
    started = time.perf_counter()
    assert compile_pattern(pattern)(name) is False
    assert nfa_steps[0] <= len(name) + 1  # each character is read once: no backtracking
    assert time.perf_counter() - started < 1.0


def test_long_names_take_linear_time():
    matches = compile_pattern(r"(.*.*)*\.(weight|bias)")
    assert matches("x." * 50_000 + "weight")
    # All characters distinct: every step misses the cache, and the cache is flushed on the way.
    distinct = "".join(map(chr, range(0x4E00, 0x4E00 + 30_000)))
    started = time.perf_counter()
    assert not matches(distinct)
    assert time.perf_counter() - started < 5.0


LINEAR = "vsconf matches regexes in linear time, without backtracking"
BACKREFERENCE = f"backreferences are not supported ({LINEAR})"
LOOKAHEAD = f"lookahead assertions (?=...) and (?!...) are not supported ({LINEAR})"
LOOKBEHIND = f"lookbehind assertions (?<=...) and (?<!...) are not supported ({LINEAR})"
CONDITIONAL = f"conditional groups (?(id)yes|no) are not supported ({LINEAR})"
ATOMIC = f"atomic groups (?>...) are not supported ({LINEAR})"
POSSESSIVE = f"possessive quantifiers (*+, ++, ?+, {{m,n}}+) are not supported ({LINEAR})"
TOO_LARGE = (
    "pattern is too large: matching it in linear time takes an automaton of more than 10000 states "
    "(counted repeats such as {m,n} are expanded)"
)
TOO_DEEP = "pattern is nested too deeply: more than 100 levels of groups"


@pytest.mark.parametrize(
    ("pattern", "message", "position"),
    [
        (r"(a)\1", BACKREFERENCE, 3),
        (r"(?P<x>a)(?P=x)", BACKREFERENCE, 8),
        (r"x[\1](a)\1", BACKREFERENCE, 8),  # in a class, \1 is an octal escape
        (r"\101(a)\1", BACKREFERENCE, 7),  # and so is \101 anywhere
        ("(?=a)a", LOOKAHEAD, 0),
        ("a(?!b)", LOOKAHEAD, 1),
        ("ab(?<=b)", LOOKBEHIND, 2),
        ("ab(?<!a)", LOOKBEHIND, 2),
        ("(a)?(?(1)b|c)", CONDITIONAL, 4),
        ("(?x) a  # (?=a comment)\n (?=a)", LOOKAHEAD, 25),
        ("a{4294967296}", "the repetition number is too large", 1),
        pytest.param("a{" + "9" * 5000 + "}", "the repetition number is too large", 1, id="5000-digit count"),
        ("(a{1000}){1000}", TOO_LARGE, 0),
        ("(?:(?:a{4294967294}){4294967294}){4294967294}", TOO_LARGE, 0),
        pytest.param("(?:)" * 2000 + "a{0,9000}", TOO_LARGE, 0, id="empty groups are work too"),
        pytest.param("(" * 10_000 + ")" * 10_000, TOO_DEEP, 100, id="10000 nested groups"),
        pytest.param("a" * 40_000, "pattern is too long: more than 32768 characters", 32768, id="too long"),
        (r"layer[0-9+\.weight", "unterminated character set", 5),
        ("a{5000}{5000}", "multiple repeat", 7),
        ("(?a)(?u)x", "ASCII and UNICODE flags are incompatible", 0),
    ],
)
def test_refusals(pattern, message, position):
    started = time.perf_counter()
    with pytest.raises(RegexError) as refused:
        compile_pattern(pattern)
    assert (refused.value.message, refused.value.position) == (message, position)
    assert str(refused.value) == f"{message} at position {position}"
    assert time.perf_counter() - started < 1.0


@pytest.mark.skipif(not hasattr(re, "NOFLAG"), reason="Python >= 3.11 syntax")
@pytest.mark.parametrize(
    ("pattern", "message", "position"),
    [
        ("(?>a*)a", ATOMIC, 0),
        ("xa*+a", POSSESSIVE, 2),
        ("xa?+a", POSSESSIVE, 2),
        ("xa{1,2}+a", POSSESSIVE, 2),
    ],
)
def test_refuses_what_backtracking_defines(pattern, message, position):
    with pytest.raises(RegexError) as refused:
        compile_pattern(pattern)
    assert (refused.value.message, refused.value.position) == (message, position)


def test_counted_repeats_within_the_budget():
    matches = compile_pattern("(?:a{1,100}){1,40}")
    assert matches("a" * 150)
    assert not matches("")


def test_wide_character_classes_are_bounded():
    wide = "".join(f"[\\x{low:02x}-\\uffff]" for low in range(17))
    with pytest.raises(RegexError) as refused:
        compile_pattern(wide)
    assert refused.value.message == (
        "character classes are too wide: their ranges span more than 1048576 characters in all"
    )
    assert compile_pattern("[\\x00-\\uffff]{16}")("x" * 16)  # one class, compiled once


def test_regex_error_is_a_value_error_that_pickles():
    error = RegexError("unterminated character set", 5)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.position) == ("unterminated character set", 5)


def test_predicates_are_cached():
    assert compile_pattern(r"fc\d\.weight") is compile_pattern(r"fc\d\.weight")


def test_literal_ends_of_a_pattern_are_checked_first():
    assert (compile_pattern(r"^model\.layers\.\d+\.weight$").prefix, compile_pattern(r"^model\.layers\.\d+\.weight$").suffix) == (
        "model.layers.",
        ".weight",
    )
    assert compile_pattern(r"(?i)model\..*").prefix == ""  # IGNORECASE: no literal ends
    assert compile_pattern(r"ab").prefix == "ab" and compile_pattern(r"ab").suffix == ""


def test_the_budget_stops_matching_while_it_runs(nfa_steps):
    """A pattern whose cache cannot hold its states, on one long name: the budget is spent
    inside the name, not after it."""
    name = "".join(random.Random(5).choices("ab", k=20_000))
    budget = saferegex.Budget(200_000)
    with pytest.raises(saferegex.BudgetExceeded) as info:
        compile_pattern("[ab]*a[ab]{500}").select([name], budget)
    assert info.value.steps == 200_000 and budget.left < 0
    assert nfa_steps[0] < 2_000  # each miss costs hundreds of steps: it stopped a tenth of the way in
    # Before running: a name longer than the budget allows is refused without reading it.
    with pytest.raises(saferegex.BudgetExceeded):
        compile_pattern("[ab]*").select(["a" * 1_000_000], saferegex.Budget(100_000))
