"""The tools an episode may call: the sandboxed Python interpreter and a calculator.

Each tool has two ways in, both always accepted: the chat tool-calling format (`spec()`, one string
argument) and plain text, a fenced block tagged with the tool's name, which every chat model can write.
A tool never raises: whatever goes wrong comes back as text marked `[tool error]`, for the model to read.
"""
from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from .sandbox import Limits, run_python
from .types import ToolCall


@dataclass(frozen=True)
class Tool:
    name: str
    arg: str                     # the one argument of the chat-format call
    fences: tuple[str, ...]      # plain text: a ```<fence> block is a call
    note: str                    # how to call it in plain text, for the system prompt
    description: str
    run: Callable[[str, Limits], str]

    def spec(self) -> dict:
        """The tool in the chat tool-calling format (OpenAI `tools=[...]`, rendered by chat templates)."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": {self.arg: {"type": "string"}}, "required": [self.arg]}}}


# ---------------------------------------------------------------- calculator

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


# The calculator runs in the loop's own process, on text a model wrote: every line must cost little whatever it
# says. So the text is bounded before it is parsed (ast.parse itself overflows on deep nesting), and the size of
# every result is estimated from its operands before it is computed: ((1+1/10**12)**64)**64... otherwise grows
# to millions of digits, and a ** b is refused when it would pass _MAX_BITS.
_MAX_CHARS = 200   # one expression
_MAX_DEPTH = 32    # parentheses inside one another
_MAX_NODES = 400   # syntax-tree nodes of one expression
_MAX_BITS = 4096   # numerator and denominator of every intermediate value (about 1,200 digits)
_TOO_BIG = f"the numbers grow too large (over {_MAX_BITS} bits); calculate a smaller step"


def _num(node: ast.AST, depth: int = 0) -> Fraction:
    """Exact value of +, -, *, /, //, %, ** over decimal numbers; nothing else is evaluated (never eval)."""
    def bits(x: Fraction) -> int:
        return max(x.numerator.bit_length(), x.denominator.bit_length())

    if depth > _MAX_CHARS:  # a guard: a bounded line has no more levels than characters ('1+1+...' is a chain)
        raise ValueError("nested too deeply")
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        if abs(node.value) == float("inf"):  # 1e999
            raise ValueError("number too large")
        return Fraction(Decimal(str(node.value)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _num(node.operand, depth + 1)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _num(node.left, depth + 1), _num(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            if b.denominator != 1:
                raise ValueError("powers take a whole exponent")
            if a == 0 and b < 0:
                raise ValueError("division by zero")
            if abs(a) != 1 and a != 0 and bits(a) * abs(b.numerator) > _MAX_BITS:  # |a| ** e has about bits(a) * e bits
                raise ValueError(_TOO_BIG)
        elif bits(a) + bits(b) > _MAX_BITS:  # a sum, product or quotient has at most bits(a) + bits(b) + 1 bits
            raise ValueError(_TOO_BIG)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ValueError("division by zero")
        return Fraction(_BIN[type(node.op)](a, b))
    raise ValueError(f"only numbers, + - * / // % ** and parentheses are allowed, not {type(node).__name__}")


def _show(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    try:
        f = float(v)
    except OverflowError:
        f = 0.0
    if f != 0.0:
        return f"{f:.10g}"
    # beyond a float's range either way (1/10**400 is not 0): Decimal keeps the exponent
    return f"{Decimal(v.numerator) / Decimal(v.denominator):.10g}"


def calculate(text: str, limits: Limits = Limits()) -> str:
    """Each non-empty line of `text` as 'expression = value' (or its error). Every line is bounded (length,
    nesting, syntax-tree size, the bits of each intermediate value), so a line costs well under a millisecond
    to a few milliseconds whatever it says."""
    out = []
    for line in [x.strip() for x in text.strip().splitlines() if x.strip()][:20]:
        shown = line if len(line) <= 80 else line[:77] + "..."  # a refused line is not echoed in full
        if len(line) > 2 * _MAX_CHARS:
            out.append(f"{shown}: [tool error] expression too long ({len(line)} characters; at most {_MAX_CHARS})")
            continue
        expr = re.sub(r"(?<=\d),(?=\d{3}\b)", "", line.replace("×", "*").replace("÷", "/").replace("^", "**"))
        expr = expr.split("=")[0].strip().rstrip(".")
        try:
            if len(expr) > _MAX_CHARS:
                raise ValueError(f"expression too long ({len(expr)} characters; at most {_MAX_CHARS})")
            depth = deepest = 0
            for ch in expr:
                depth += (ch == "(") - (ch == ")")
                deepest = max(deepest, depth)
            if deepest > _MAX_DEPTH:
                raise ValueError(f"nested too deeply (at most {_MAX_DEPTH} levels)")
            tree = ast.parse(expr, mode="eval")
            if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
                raise ValueError(f"expression too long (more than {_MAX_NODES} parts)")
            out.append(f"{line} = {_show(_num(tree.body))}")
        except (SyntaxError, ValueError, ArithmeticError, RecursionError, MemoryError) as e:
            why = e.msg if isinstance(e, SyntaxError) else str(e) or type(e).__name__
            out.append(f"{shown}: [tool error] {why}")
    return "\n".join(out) or "[tool error] no expression given"


TOOLS: dict[str, Tool] = {
    "python": Tool(
        "python", "code", ("python", "py"),
        "You can run Python to help you. To run code, reply with one block\n```python\n<code that prints what you "
        "need>\n```\nand nothing after it; the next message shows what it printed. Run code as often as you need.",
        "Run Python 3 code in a fresh process and return what it prints (stdout and stderr).",
        lambda code, limits: run_python(code, limits).as_text()),
    "calculator": Tool(
        "calculator", "expression", ("calc", "calculator"),
        "You can use a calculator. To use it, reply with one block\n```calc\n<one arithmetic expression per line, "
        "e.g. (48 - 12) / 3>\n```\nand nothing after it; the next message shows each result. Work step by step "
        "and calculate every step you are not sure of.",
        "Evaluate arithmetic exactly: one expression per line with + - * / // % ** and parentheses.",
        calculate),
}


def fenced_call(reply: str, tools: tuple[Tool, ...]) -> tuple[Tool, str] | None:
    """The last fenced block in a plain-text reply that calls one of `tools`, with its content.

    A reply with a call is a call even when it also states an answer: small models write the code and
    then guess its output in the same reply; the answer counts only once the output has been read.
    """
    fence = {f: t for t in tools for f in t.fences}
    found = None
    for m in re.finditer(r"```([A-Za-z]*)[ \t]*\n(.*?)```", reply, re.DOTALL):
        tag = m.group(1).lower() or ("python" if "python" in fence else "")  # an untagged block is code
        if tag in fence and m.group(2).strip():
            found = (fence[tag], m.group(2).strip())
    return found


def structured_call(call: ToolCall, tools: tuple[Tool, ...]) -> tuple[Tool | None, str, str]:
    """(tool, argument, error) of a chat-format call; an error names what to send instead."""
    tool = next((t for t in tools if t.name == call.name), None)
    names = ", ".join(repr(t.name) for t in tools)
    if tool is None:
        return None, "", f"[tool error] there is no tool named {call.name!r}; the tools are {names}"
    try:
        args = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        return tool, "", f'[tool error] the arguments were not valid JSON; send {{"{tool.arg}": "..."}}'
    value = args.get(tool.arg) if isinstance(args, dict) else None
    if not isinstance(value, str) or not value.strip():
        return tool, "", f'[tool error] no {tool.arg} given; send {{"{tool.arg}": "..."}}'
    return tool, value, ""


OUTPUT_HEADER = "Tool output:"  # starts the user message that answers a plain-text call


def tool_instruction(instruction: str, tools: tuple[str, ...] = ("python",)) -> str:
    """A task set's instruction for episodes with tools: how to call them, then the answer line it asks for
    (the single-turn 'keep your reasoning short' is dropped: with a tool, the work happens in the calls)."""
    notes = "\n".join(TOOLS[t].note for t in tools)
    lines = instruction.strip().splitlines()
    if lines and lines[-1].startswith("Answer:"):
        return f"Solve the problem. {notes}\nWhen you know the answer, end with a final line exactly of the form:\n" \
               f"{lines[-1]}"
    return f"{instruction.strip()}\n\n{notes}"
