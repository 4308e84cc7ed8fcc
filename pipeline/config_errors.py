"""Config errors as one line that names the key, the bad value and what is allowed, printed first.

jsonargparse reports a bad value deep inside a config as nested "Does not validate against any of the Union
subtypes" blocks after ~45 lines of usage. ``summarize`` digs out the innermost reason and the full key;
``report_parser_exit`` (called by the CLI around parsing) prints that line, then the parser's own details (not the
usage); ``check_config_files`` names an empty, missing or broken config file first.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys


NOISE = (
    "Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
    "Given value:", "Problem with given class_path", "Parser key", "- Expected a <class 'NoneType'>",
    "Expected a path but",
    # jsonargparse's list of what a class entry may look like, after the real reason of a union of classes
    "Not a valid subclass of", "Subclass types expect one of", "a class path (str)", "a dict with class_path entry",
    "a dict without class_path", "a dict with parameters accepted by the base class", "Expected a <class 'NoneType'>",
)


def _accepted(class_path: str) -> list[str]:
    """The init arguments of a class named in a config (for "did you mean")."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    except Exception:  # noqa: BLE001  suggestions are a courtesy
        return []


def summarize(message: str) -> str:
    """One line from a jsonargparse error message: ``<key>: <reason>`` (plus close matches for an unknown key)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    top = re.match(r'Parser key "([^"]+)"', lines[0]) if lines else None
    nested = re.findall(r"NestedArg\(key='([^']+)'", message)
    key = top.group(1) if top else ""
    if key and nested:  # the outermost NestedArg names the path below the top key
        below = nested[-1]
        key = f"{key}.init_args.{below}" if key in ("model", "data") and not below.startswith("init_args") else f"{key}.{below}"
    reasons = [line.lstrip("- ") for line in lines if not any(line.lstrip("- ").startswith(n.lstrip("- ")) for n in NOISE)]
    reasons = [r for r in reasons if r not in ("",) and not r.startswith("Parser key")]
    reason = reasons[-1] if reasons else (lines[0] if lines else message)
    if not reasons and lines and lines[0].startswith('Parser key "'):
        reason = lines[0].split(":", 1)[1].strip() or reason
    unknown = re.search(r"Option '([^']+)' is not accepted", reason)
    if unknown:
        # the innermost class named: "Problem with given class_path 'X'" or "Namespace(class_path='X'"
        paths = sorted((m.start(), m.group(1)) for m in re.finditer(r"class_path[ =]'([^']+)'", message))
        accepted = _accepted(paths[-1][1]) if paths else []
        close = difflib.get_close_matches(unknown.group(1), accepted, n=1)
        reason = f"unknown key {unknown.group(1)!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + (
            f"; accepted: {', '.join(accepted)}" if accepted else "")
    not_finite = re.match(r"Expected a dot import path string: (-?(nan|inf|infinity))$", reason, re.IGNORECASE)
    if not_finite:  # jsonargparse refuses NaN and inf as floats, then tries the union's other types
        reason = f"expected a finite number, got {not_finite.group(1)}"
    expected = re.match(r"Expected an? (.+?)\. Got value: (.*)$", reason)
    if expected:
        kind, value = expected.groups()
        literal = re.match(r"typing\.Literal\[(.*)\]$", kind)
        kind = f"one of {literal.group(1)}" if literal else re.sub(r"<class '([\w.]+)'>", r"\1", kind)
        reason = f"expected {kind}, got {value!r}"
    return f"{key}: {reason}" if key and not reason.startswith(key) else reason


def check_config_files(args: list[str]) -> None:
    """Each ``--config`` file exists and holds a YAML mapping; else one line naming the file (exit 2).

    jsonargparse would say ``Unexpected config:`` for an empty file and name no file for a YAML syntax error."""
    import yaml

    pairs = [a.split("=", 1) for a in args if a.startswith("--config=")] + [
        [flag, path] for flag, path in zip(args, args[1:]) if flag in ("-c", "--config")]
    for _, path in pairs:
        if path.lstrip().startswith("{"):  # an inline config
            continue
        try:
            with open(path) as f:
                content = yaml.safe_load(f)
        except FileNotFoundError:
            fail(f"--config {path}: no such file")
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            fail(f"--config {path}: YAML syntax error{where}: {getattr(e, 'problem', None) or e}")
        if not isinstance(content, dict) or not content:
            fail(f"--config {path}: the file is empty or not a mapping of keys (a config has trainer:, model:, data: ...)")
        _check_logger_packages(path, content)


def _check_logger_packages(path: str, content: dict) -> None:
    """A config naming WandbLogger where wandb is not installed: jsonargparse checks the logger's options against
    wandb's own signature, so it fails with "Option 'group' is not accepted", even with --trainer.logger false
    on the command line (the file is checked first)."""
    import importlib.util

    from run_record.wandb import is_wandb_path

    loggers = (content.get("trainer") or {}).get("logger") if isinstance(content.get("trainer"), dict) else None
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        name = logger.get("class_path", "") if isinstance(logger, dict) else ""
        if is_wandb_path(name) and importlib.util.find_spec("wandb") is None:
            fail(f"--config {path}: trainer.logger is {name}, which needs the wandb package: pip install wandb "
                 "(or pip install -e .), or set trainer.logger: false in a copy of the config to run without W&B")


class ConfigError(SystemExit):
    """Exit with code 2 for bad input; ``line`` is the one-line message that was printed."""

    def __init__(self, line: str, code: int = 2):
        super().__init__(code)
        self.line = line


def fail(line: str, details: str | None = None, code: int = 2):
    """Print ``error: <line>`` (and details) to stderr and exit; nothing has been run or written."""
    sys.stderr.write(f"error: {line}\n")
    if details:
        sys.stderr.write(details.rstrip() + "\n")
    raise ConfigError(line, code)


def report_parser_exit(captured_stderr: str, exit: SystemExit, options: list[str] = ()) -> None:
    """Re-raise jsonargparse's exit, its usage text replaced by one line naming the key (then the details);
    ``options``: the command line's option strings, for "did you mean" after an unrecognized one."""
    if exit.code in (0, None) or "error: " not in captured_stderr:
        sys.stderr.write(captured_stderr)
        raise exit
    message = captured_stderr.split("error: ", 1)[1].strip()
    summary = summarize(message)
    unrecognized = re.match(r"unrecognized arguments: (--[^\s=]+)", summary, re.IGNORECASE)
    if unrecognized:  # a misspelt key is refused (no prefix completion): name the closest option
        close = difflib.get_close_matches(unrecognized.group(1), list(options), n=1, cutoff=0.75)
        summary += f" (did you mean {close[0]}?)" if close else ""
    details = None if summary.strip() == message else f"details (run with --help for the options):\n  {message}"
    fail(f"invalid configuration: {summary}", details)
