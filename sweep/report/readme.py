"""The README block of a study: the text between `<!-- sweep:NAME -->` and `<!-- /sweep:NAME -->`.

Only the text between the two markers changes; every other byte of the file stays as it was, so
running a report twice leaves the file unchanged. A missing block is added at the end of the file.
"""

from __future__ import annotations

from pathlib import Path

from sweep.errors import SweepError


def markers(name: str) -> tuple[str, str]:
    """The opening and closing marker of study `name`'s block."""
    return f"<!-- sweep:{name} -->", f"<!-- /sweep:{name} -->"


def replace_block(text: str, name: str, block: str, *, source: str = "README") -> str:
    """`text` with study `name`'s block set to `block` (added at the end when missing).

    The block keeps the file's line endings (CRLF files get CRLF).

    Raises:
        SweepError: A marker appears twice, one without the other, or the closing one comes first.
    """
    start, end = markers(name)
    newline = "\r\n" if "\r\n" in text else "\n"
    body = newline + block.replace("\r\n", "\n").replace("\n", newline)
    if not body.endswith(newline):
        body += newline
    n_start, n_end = text.count(start), text.count(end)
    if n_start == 0 and n_end == 0:
        before = text if not text or text.endswith(newline) else text + newline
        gap = newline if before else ""  # a blank line between the file's end and the new block
        return f"{before}{gap}{start}{body}{end}{newline}"
    if n_start != 1 or n_end != 1:
        raise SweepError(
            f"{source}: expected one '{start}' and one '{end}', found {n_start} and {n_end}; "
            "fix the markers by hand"
        )
    head, rest = text.split(start)
    if end not in rest:
        raise SweepError(f"{source}: '{end}' comes before '{start}'; fix the markers by hand")
    _, tail = rest.split(end)
    return f"{head}{start}{body}{end}{tail}"


def read_readme(path: Path) -> str:
    """The file's text, decoded without newline translation (so writing it back is byte-identical).

    A file that does not exist yet reads as empty: the report creates it (its folder must exist).

    Raises:
        SweepError: The file's folder is missing, or the file is not UTF-8.
    """
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        if Path(path).parent.is_dir():
            return ""
        raise SweepError(f"{path}: its folder does not exist; create it or fix the --readme path") from None
    except UnicodeDecodeError as err:
        raise SweepError(f"{path}: not UTF-8 text ({err.reason}); convert it or pick another file") from None
    except OSError as err:
        raise SweepError(f"{path}: cannot read it ({err.strerror}); check the path") from None
