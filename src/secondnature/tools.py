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
from decimal import Decimal, InvalidOperation
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


def _num(node: ast.AST) -> Fraction:
    """Exact value of +, -, *, /, //, %, ** over decimal numbers; nothing else is evaluated (never eval)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(Decimal(str(node.value)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _num(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _num(node.left), _num(node.right)
        if isinstance(node.op, ast.Pow) and (b.denominator != 1 or abs(b) > 64 or abs(a) > 10 ** 12):
            raise ValueError("powers take a whole exponent up to 64")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ValueError("division by zero")
        return Fraction(_BIN[type(node.op)](a, b))
    raise ValueError(f"only numbers, + - * / // % ** and parentheses are allowed, not {type(node).__name__}")


def _show(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    return f"{float(v):.10g}"


def calculate(text: str, limits: Limits = Limits()) -> str:
    """Each non-empty line of `text` as 'expression = value' (or its error)."""
    out = []
    for line in [x.strip() for x in text.strip().splitlines() if x.strip()][:20]:
        expr = re.sub(r"(?<=\d),(?=\d{3}\b)", "", line.replace("×", "*").replace("÷", "/").replace("^", "**"))
        expr = expr.split("=")[0].strip().rstrip(".")
        try:
            out.append(f"{line} = {_show(_num(ast.parse(expr, mode='eval').body))}")
        except (SyntaxError, ValueError, ZeroDivisionError, InvalidOperation, RecursionError, OverflowError) as e:
            why = e.msg if isinstance(e, SyntaxError) else str(e)
            out.append(f"{line}: [tool error] {why}")
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
