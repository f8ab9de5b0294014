"""The README and docs/*.md say only what the repository holds.

For README.md and every docs/*.md: the shell examples (fenced ```bash, ```sh, ```shell,
```console blocks, and unlabeled blocks that hold commands) name only repository files that exist,
only real `kd-nmt` sub-commands and only existing `python scripts/X.py` / `bash recipes/X.sh`;
and every Markdown link to a relative file (and heading anchor) resolves. Pure text work: no
training, no subprocess; a failure names the file and line.
"""
import re
from pathlib import Path

import pytest

import kd_nmt.cli

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

SHELL_LABELS = {"bash", "sh", "shell", "console"}
# an unlabeled block holds commands when one of its lines starts with one of these
COMMAND_WORDS = ("kd-nmt", "python", "python3", ".venv/bin/python", "bash", "make", "fairseq-",
                 "torchrun", "ct2-", "sacrebleu", "pip", "git", "ls", "cat", "head", "sed", "wc",
                 "grep", "cd", "time", "export")
# the repository folders whose paths a command may name
REPO_DIRS = ("recipes", "scripts", "kd_nmt", "data", "benchmarks", "models", "docs", "tests")
# git-ignored outputs that `make demo`, `make data` and the benchmarks create: not in a checkout
GENERATED = ("work/", "results/", "data/corpus/", "benchmarks/work/")

PATH_RE = re.compile(r"(?<![\w./$@-])((?:%s)/[\w./+-]*)" % "|".join(REPO_DIRS))
MAKE_RE = re.compile(r"(?<![\w/.-])make\s+([a-z][\w-]*)")
MAKE_TARGETS = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", (REPO / "Makefile").read_text(), re.M))
SUBCOMMAND_RE = re.compile(r"(?<![\w/.-])kd-nmt\s+([A-Za-z][\w-]*)")
SCRIPT_RE = re.compile(r"(?<![\w/.-])(?:\S*/)?(?:python3?|bash)\s+(?:-u\s+)?([^\s$'\"`;|&()]+\.(?:py|sh))\b")
MODULE_RE = re.compile(r"(?<![\w/.-])(?:\S*/)?python3?\s+-m\s+((?:%s)(?:\.\w+)+)" % "|".join(REPO_DIRS))
LINK_RE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CAPS_RE = re.compile(r"(?<![A-Za-z])[A-Z][A-Z0-9_]*(?![a-z])")
FENCE_RE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")


def rel(path):
    return path.relative_to(REPO).as_posix() if REPO in path.parents else str(path)


def fenced_blocks(lines):
    """(label, [(line number, text)]) of each fenced block; the fences themselves left out."""
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, label, body = m.group(2), m.group(3).lower(), []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[0] * len(fence)):
            body.append((i + 1, lines[i]))
            i += 1
        blocks.append((label, body))
        i += 1
    return blocks


def starts_with_command(text):
    text = text.strip()
    if text.startswith("$ "):
        text = text[2:].lstrip()
    if re.match(r"^[\w.-]+(?: [\w-]+)?: ", text):  # a program's output: `kd-nmt relabel: 400 lines ...`
        return False
    text = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+", "", text)  # VAR=value prefixes
    return any(text == w or text.startswith(w if w.endswith(("-", "/")) else w + " ")
               for w in COMMAND_WORDS)


def command_lines(label, body):
    """The lines of a block that are commands: every line of a shell block; with `$ ` prompts
    only the prompted lines and their `\\` continuations; unlabeled blocks only when a line starts
    with a command (usage synopses included), else none (program output, tables, JSON)."""
    if label and label not in SHELL_LABELS:
        return []
    if not label and not any(starts_with_command(t) for _, t in body):
        return []
    if label == "console" or any(t.lstrip().startswith("$ ") for _, t in body):
        out, continued = [], False
        for n, t in body:
            if t.lstrip().startswith("$ ") or continued:
                out.append((n, t.lstrip()[2:] if t.lstrip().startswith("$ ") else t))
                continued = t.rstrip().endswith("\\")
        return out
    return list(body)


def is_placeholder(path):
    return "*" in path or "<" in path or ">" in path or "..." in path or bool(CAPS_RE.search(path))


def check_path(path):
    """None if `path` (relative to the repository) is fine, else why not."""
    path = path.rstrip(".,;:)]}'\"`")
    if not path or path.startswith(GENERATED) or (REPO / path).exists() or is_placeholder(path):
        return None
    return f"{path} does not exist in the repository"


def check_commands(lines):
    problems = []
    for n, text in lines:
        for m in PATH_RE.finditer(text):
            why = check_path(m.group(1))
            if why:
                problems.append((n, why))
        for m in SUBCOMMAND_RE.finditer(text):
            name = m.group(1)
            if name not in kd_nmt.cli.COMMANDS and not CAPS_RE.fullmatch(name):
                problems.append((n, f"`kd-nmt {name}` is not a kd-nmt sub-command "
                                    f"(kd_nmt.cli.COMMANDS: {', '.join(kd_nmt.cli.COMMANDS)})"))
        for m in MAKE_RE.finditer(text):
            if m.group(1) not in MAKE_TARGETS:
                targets = ", ".join(sorted(MAKE_TARGETS))
                problems.append((n, f"`make {m.group(1)}` is not a Makefile target ({targets})"))
        for m in SCRIPT_RE.finditer(text):
            script = m.group(1)
            if script.startswith(("/", "~")) or script.startswith(GENERATED) or is_placeholder(script):
                continue
            if not (REPO / script).is_file():
                problems.append((n, f"{m.group(0).strip()}: {script} does not exist"))
        for m in MODULE_RE.finditer(text):
            module = m.group(1).replace(".", "/")
            if not ((REPO / f"{module}.py").is_file() or (REPO / module / "__init__.py").is_file()):
                problems.append((n, f"python -m {m.group(1)}: no such module in the repository"))
    return problems


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    found, seen = set(), {}
    fence = None
    for n, line in enumerate(lines):
        m = FENCE_RE.match(line)
        if m:
            fence = None if fence else m.group(2)
            continue
        if fence is None and re.match(r"#{1,6}\s", line):
            base = slug(line.lstrip("#"))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def prose_lines(lines):
    """(line number, text) outside fenced blocks, with inline code spans blanked."""
    out, fence = [], None
    for n, line in enumerate(lines, 1):
        m = FENCE_RE.match(line)
        if m and (fence is None or line.strip().startswith(fence)):
            fence = m.group(2) if fence is None else None
            continue
        if fence is None:
            out.append((n, re.sub(r"`[^`]*`", "``", line)))
    return out


def check_links(doc, lines, root=REPO):
    problems = []
    for n, text in prose_lines(lines):
        for m in LINK_RE.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (doc.parent / file_part).resolve() if file_part else doc
            if not dest.exists():
                problems.append((n, f"link ({target}): {file_part} does not exist"))
            elif root not in dest.parents and dest != root:
                problems.append((n, f"link ({target}) points outside the repository"))
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append((n, f"link ({target}): no heading #{anchor} in {rel(dest)}"))
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_doc_examples_and_links_resolve(doc):
    lines = doc.read_text(encoding="utf-8").splitlines()
    problems = check_links(doc, lines)
    for label, body in fenced_blocks(lines):
        problems += check_commands(command_lines(label, body))
    assert not problems, "\n" + "\n".join(f"{rel(doc)}:{n}: {why}" for n, why in sorted(problems))


def test_the_checks_catch_what_they_should(tmp_path):
    """The checker itself: each kind of mistake is found, the allowed forms are not."""
    doc = tmp_path / "x.md"
    text = "\n".join([
        "# A heading",
        "[ok](x.md#a-heading) [gone](nowhere.md) [web](https://example.org) [no](#nope)",
        "```bash",
        "python scripts/nope.py --data work/quickstart/data/bin",
        "bash recipes/quickstart.sh && kd-nmt relabel --teacher models/teacher-deen/model.pt",
        "kd-nmt distill data-bin   # scripts/NAME.py, data/corpus/deen, benchmarks/work/x",
        "make demo && make deploy",
        "python -m data.nope; python -m data.prepare",
        "```",
        "```",
        "kd-nmt: error: teacher 'models/gone.pt' uses ...",
        "```",
    ])
    doc.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    found = check_links(doc, lines, root=tmp_path)
    for label, body in fenced_blocks(lines):
        found += check_commands(command_lines(label, body))
    whys = sorted(why for _, why in found)
    # nowhere.md, #nope, scripts/nope.py (as a path and as a script), kd-nmt distill, data.nope,
    # make deploy
    assert len(found) == 7, whys
    assert any("nowhere.md" in w for w in whys) and any("#nope" in w for w in whys)
    assert sum("scripts/nope.py" in w for w in whys) == 2
    assert any("kd-nmt distill" in w for w in whys) and any("data.nope" in w for w in whys)
    assert any("make deploy" in w for w in whys) and not any("make demo" in w for w in whys)
    assert not any("a-heading" in w or "models/gone" in w or "quickstart" in w for w in whys)
