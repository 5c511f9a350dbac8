"""What the ``tfvtg`` and ``numpro`` commands share: logging to stderr and turning errors into one line.

Results go to stdout; progress bars, info and warnings to stderr. A `TfvtgError` becomes ``error: <message>``
and exit status 1, without a traceback unless ``--verbose`` was given; running out of memory is one line too,
Ctrl-C is ``interrupted`` and status 130. Any other exception is a bug: its traceback is shown with a request
to report it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tfvtg.errors import InputError, TfvtgError
from tfvtg.video import MAX_FPS  # re-exported: the commands' --fps limit

if TYPE_CHECKING:
    from tfvtg.grounder import GroundingResult

__all__ = [
    "MAX_FPS", "OutputSet", "check_output_path", "clock", "counted", "describe_decomposition",
    "moments_table", "option_group", "run_group", "save_partial", "setup_logging", "verbose_option",
    "write_predictions", "writing",
]

_LOG_FORMAT = "%(levelname)s: %(message)s"
F = TypeVar("F", bound=Callable[..., Any])


class _LowercaseLevel(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Format a copy: the record is shared with every other handler (e.g. pytest's log capture).
        copy = logging.makeLogRecord(record.__dict__)
        copy.levelname = record.levelname.lower()
        return super().format(copy)


class _ProgressAwareHandler(logging.StreamHandler):
    """A stderr handler that prints above tqdm progress bars instead of onto the line of one."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm_module = sys.modules.get("tqdm")  # a bar can only be on screen once tqdm is imported
        if tqdm_module is None:
            super().emit(record)
            return
        try:
            tqdm_module.tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 (logging's contract: a failing handler reports, never raises)
            self.handleError(record)


def setup_logging(verbose: bool = False) -> None:
    """Send the toolkit's log records to stderr (info and up; debug with ``verbose``), above progress bars."""
    handler = _ProgressAwareHandler(sys.stderr)
    handler.setFormatter(_LowercaseLevel(_LOG_FORMAT))
    for name in ("tfvtg", "numpro"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        logger.propagate = False


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    # ctx.meta is shared by the group's and the command's contexts: -v given to either one holds for both.
    verbose = bool(value or ctx.meta.get("tfvtg.verbose", False))
    ctx.meta["tfvtg.verbose"] = verbose
    setup_logging(verbose)
    return verbose


# Given to the group and to every command, so that -v works before and after the command name.
verbose_option = click.option(
    "--verbose", "-v", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
    help="Show debug logs and full tracebacks.",
)


def option_group(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying several click options in the order listed, for options commands share."""

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def check_output_path(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    folder: bool = False,
    what: str = "output",
) -> Path:
    """Refuse, before any work is done, an output the command could not write or that is one of its inputs.

    Creates the missing parent folders (``path`` itself too when ``folder``), as the commands would when
    writing, and checks that a file can be created there, so that a long run does not fail at its last step.

    Args:
        path: The file (or, with ``folder``, the folder) the command will write.
        inputs: Files the command reads; writing over one of them is refused. ``None`` entries are ignored.
        folder: ``path`` is a folder to write files into, not a file.
        what: Name of the output in messages (``"--out"``, ``"figure"``).

    Raises:
        InputError: ``path`` is one of ``inputs``, a folder where a file is expected (or the reverse), or its
            folder cannot be created or written.
    """
    out = Path(path).expanduser()
    for source in inputs:
        if source is not None and out.exists() and Path(source).exists() and os.path.samefile(out, source):
            raise InputError(f"{what} {out} is also an input of this command; writing it would destroy "
                             "the input, so give another path")
    if folder:
        if out.exists() and not out.is_dir():
            raise InputError(f"{what} {out} is a file; give a folder")
        target = out
    else:
        if out.is_dir():
            raise InputError(f"{what} {out} is a folder; give a file name")
        target = out.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise InputError(f"cannot write {what} {out}: cannot create folder {target} ({reason})") from None
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise InputError(f"cannot write {what} {out}: folder {target} is not writable ({reason})") from None
    return out


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 frame"``, ``"30 frames"``: a count with its noun in the right number (``plural`` when not +s)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def clock(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` from an hour on): a time as a person reads it off a player."""
    tenths = int(round(max(seconds, 0.0) * 10))
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    text = f"{minutes:02d}:{rest // 10:02d}.{rest % 10}"
    return f"{hours}:{text}" if hours else text


def describe_decomposition(result: GroundingResult) -> list[str]:
    """The lines saying how a TFVTG result's query was decomposed (or that it was not: VLM-only)."""
    d = result.decomposition
    if result.method == "vlm-only":
        return ["decomposition: none, VLM-only (no LLM configured; pass --llm MODEL for the full method)"]
    lines = [f"decomposition: {d.relation} ({d.source}{': ' + d.note if d.note else ''})"]
    if d.paraphrases:
        lines.append("  paraphrases: " + " | ".join(d.paraphrases))
    for i, event in enumerate(d.sub_events, start=1):
        lines.append(f"  sub-event {i}: " + " | ".join(event))
    return lines


def moments_table(result: Any) -> list[str]:
    """A TFVTG result's or NumPro details' moments as aligned table lines (rank, clock times, seconds,
    score)."""
    rows = [("#", "start", "end", "start s", "end s", "score")]
    rows += [(str(i), clock(m.start), clock(m.end), f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.3f}")
             for i, m in enumerate(result.moments, start=1)]
    widths = [max(len(row[c]) for row in rows) for c in range(6)]
    lines = ["  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    scores = [m.score for m in result.moments]
    meta = getattr(result, "meta", None)  # numpro's details have a meta() method, and no profile
    reference = isinstance(meta, dict) and meta.get("profile") == "reference"
    if reference and any(s > scores[0] for s in scores[1:]):  # the official code's order, kept
        lines.append("  note: ranked as the official code ranks (--profile reference): its confidences "
                     "invert when the best window's score is negative (bug B2), so a lower rank can show a "
                     "higher score")
    return lines


class OutputSet:
    """The set of files one command writes into a folder, named by a pattern: a rerun leaves only its own.

    Every command that writes several files into a folder (``numpro overlay``'s frames, ``tfvtg ground
    --plot``'s numbered figures) declares the names it owns and calls `clear` before writing: files of that
    form left by an earlier run are removed, so the folder never mixes two runs (a shorter video's 9 frames
    beside a longer one's frames 9-29). Files of any other name are the user's and are never touched.

    Args:
        folder: Where the files go.
        pattern: Regular expression a whole file name of the set matches.
        what: The set in messages (``"numbered frames"``).
    """

    def __init__(self, folder: str | os.PathLike[str], pattern: str, what: str) -> None:
        self.folder = Path(folder)
        self.pattern = re.compile(pattern)
        self.what = what

    def existing(self) -> list[Path]:
        """Files in the folder whose names are of this set's form, sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if self.pattern.fullmatch(p.name) and p.is_file())

    def clear(self, keep: Iterable[str | os.PathLike[str]] = ()) -> int:
        """Remove the set's files left by an earlier run (except ``keep``); log and return how many.

        Raises:
            InputError: A file cannot be removed (say which and why).
        """
        kept = {Path(p).name for p in keep}
        stale = [p for p in self.existing() if p.name not in kept]
        for path in stale:
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # removed meanwhile: the aim is reached
            except OSError as exc:
                raise InputError(f"cannot remove {path}, left by an earlier run: {exc.strerror or exc}; "
                                 "remove it or write to another folder") from None
        if stale:
            logging.getLogger("tfvtg").info("removed %d %s of an earlier run from %s", len(stale), self.what,
                                            self.folder)
        return len(stale)


def save_partial(out_path: str | os.PathLike[str] | None, made: Sequence[Any],
                 total: int | None) -> Path | None:
    """Keep the predictions paid for when a run stops early: ``OUT.partial.jsonl`` beside ``--out``.

    Written (atomically, never over ``--out``) when there is an ``--out`` and at least one record; the warning
    says how many (of ``total``, when known) there are and where. Returns the file written, if any.
    """
    from tfvtg.datasets import write_jsonl

    if out_path is None or not made:
        return None
    partial = _partial_path(out_path)
    with writing(partial, "partial predictions"):
        write_jsonl(partial, made)
    done = counted(len(made), "query", "queries") if total is None else \
        f"{len(made)} of {counted(total, 'query', 'queries')}"
    logging.getLogger("tfvtg").warning("stopped after %s; their predictions are in %s", done, partial)
    return partial


def _partial_path(out_path: str | os.PathLike[str]) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.partial{out_path.suffix or '.jsonl'}")


def write_predictions(out_path: str | os.PathLike[str], records: Sequence[Any]) -> None:
    """Write a finished run's predictions to ``--out`` and remove an earlier stopped run's partial file
    beside it, so the folder never holds a stale ``OUT.partial.jsonl`` next to a complete ``OUT``."""
    from tfvtg.datasets import write_jsonl

    with writing(out_path, "--out"):
        write_jsonl(out_path, records)
    partial = _partial_path(out_path)
    if partial.is_file():
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        logging.getLogger("tfvtg").info("removed %s, left by an earlier run that stopped", partial)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str = "output") -> Iterator[None]:
    """Turn an `OSError` raised while writing ``path`` (disk full, permission changed) into one line."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write {what} {path}: {exc.strerror or exc}") from exc


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's (CUDA, MPS)
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)  # torch's CPU allocator


def run_group(group: click.Group, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run a click group as a command; return the exit status instead of raising ``SystemExit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    setup_logging(verbose)
    try:
        result = group.main(args=args, prog_name=prog_name, standalone_mode=False)
    except TfvtgError as exc:
        if verbose:
            logging.getLogger("tfvtg").exception("details")
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort as exc:  # click turns Ctrl-C into Abort
        click.echo("interrupted" if isinstance(exc.__context__, KeyboardInterrupt) else "aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush is quiet
        return 0
    except Exception as exc:
        if not _out_of_memory(exc):
            traceback.print_exc()
            click.echo(f"error: unexpected {type(exc).__name__}; this is a bug in {prog_name}: please report "
                       "it with the command line and the traceback above", err=True)
            return 1
        if verbose:
            logging.getLogger("tfvtg").exception("details")
        click.echo(f"error: out of memory ({type(exc).__name__}); try a smaller --batch-size, a lower --fps, "
                   "or a machine with more memory", err=True)
        return 1
    return result if isinstance(result, int) else 0
