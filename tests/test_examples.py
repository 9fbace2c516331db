"""Every example runs as its header says, so none rots."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOCS = EXAMPLES.parent / "docs"

EXPECTED = {
    "quickstart.py": ["1000 requests: 1 API call(s), hits=999, misses=1", "typed error:"],
    "json_credentials.py": ["as orders_app", "database: orders", "has no JSON key 'sslrootcert'"],
    "staging_labels.py": ["AWSPENDING: token-v2", "AWSCURRENT: token-v2", "AWSPREVIOUS: token-v1", "moved"],
    "asyncio_app.py": ["prefetched, failures: {}", "200 requests: api_calls={'BatchGetSecretValue': 1}, hits=200"],
    "preforked_workers.py": ["API calls made by this worker: 0"],
    "sqs_listener.py": ["cached: password-1", "after the event: password-2"],
    "lambda_handler.py": ["handled as orders_app", "101 invocations: api_calls={'BatchGetSecretValue': 1}"],
    "sqlalchemy_rotation.py": ["before rotation: example_", "after rotation: example_", "'GetSecretValue': 2"],
    "psycopg_pool_rotation.py": ["before rotation: ('example_", "after rotation: ('example_", "'GetSecretValue': 2"],
    "fastapi_app.py": ["before rotation: example_", "after rotation: 200 example_", "'GetSecretValue': 2"],
    "otel_prometheus.py": [
        "stats(): hits=99, misses=2, read_errors=1, size=2",
        'secretcache_result="hit"} 99.0',
        'secretcache_result="miss"} 1.0',
        'secretcache_result="error"} 1.0',
        'secretcache_api_calls_total{aws_operation="GetSecretValue",error_type="ResourceNotFoundException"',
        "secretcache_fetch_duration_seconds_count{",
    ],
    "typed_settings.py": [
        "before rotation: {'app': 'orders', 'settings_user': 'orders_v1', 'pool_user': 'orders_v1'}",
        "closed the pool of orders_v1",
        "after rotation: {'app': 'orders', 'settings_user': 'orders_v2', 'pool_user': 'orders_v2'}",
        "Secrets Manager calls: {'GetSecretValue': 2}",
    ],
    "host_cache.py": [
        "requests to the server: 1",
        "Secrets Manager calls for 8 workers x 100 reads: {'BatchGetSecretValue': 1}",
        "server exited with 0",
    ],
    "official_stubber.py": ["10 reads, 1 call: True", "AWSPENDING: None", "error: AccessDeniedException", "every stub"],
    "lambda_powertools_observability.py": [
        '"Namespace":"MyApp"',
        '"SecretCacheHits":[2.0],"SecretCacheMisses":[0.0],"SecretsManagerCalls":[1.0]',  # cold start
        '"SecretsManagerCalls":[2.0],"SecretCacheStaleServed":[2.0]',  # the outage, served stale
        '"level":"WARNING"',
        '"name":"secretcache"',
        '"secret_name":"prod/payments/api-key"',
        '"error_type":"ThrottlingException"',
        '"function_request_id":"00000000-0000-4000-8000-000000000004"',
    ],
}
NEEDS_POSTGRES = {"sqlalchemy_rotation.py", "psycopg_pool_rotation.py", "fastapi_app.py"}
# Pages showing an example's Prometheus scrape as "the example's output": the samples must be the same.
SHOWN_SCRAPES = {"otel_prometheus.py": "monitoring.md"}


def test_every_example_is_covered() -> None:
    """A new example must be added to this test."""
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


def _run(name: str, env: dict[str, str], *, options: tuple[str, ...] = (), python: str = sys.executable) -> None:
    """Run one example as its header says and check its output shows what it claims, and no value."""
    source = (EXAMPLES / name).read_text()
    assert "python examples/" + name in source  # the one command written at its top
    result = subprocess.run(
        [python, *options, str(EXAMPLES / name)],
        cwd=EXAMPLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for expected in EXPECTED[name]:
        assert expected in result.stdout
    assert "example-password" not in result.stdout + result.stderr
    assert "pk_live_example" not in result.stdout + result.stderr
    if name in SHOWN_SCRAPES:
        page = SHOWN_SCRAPES[name]
        blocks = re.findall(r"```text\n(.*?)```", (DOCS / page).read_text(), re.DOTALL)
        shown = [block for block in blocks if "_total" in block]
        assert len(shown) == 1, page
        assert _samples(shown[0]) == _samples(result.stdout), f"{page} shows another scrape than {name} prints"


def _samples(text: str) -> list[str]:
    """The Prometheus samples in ``text``, sorted, as the docs show them: no otel_scope_* label, bucket or sum."""
    samples = []
    for line in text.splitlines():
        if not line.startswith("secretcache_") or re.match(r"\w+_(bucket|sum)\{", line):
            continue
        line = re.sub(r'otel_scope_\w+="[^"]*",?', "", line)
        samples.append(line.replace(",}", "}").replace("{}", ""))
    return sorted(samples)


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - NEEDS_POSTGRES))
def test_example_runs(name: str) -> None:
    """The example runs locally against moto as its header says, with no database."""
    _run(name, dict(os.environ))


@pytest.mark.parametrize("name", sorted(NEEDS_POSTGRES))
def test_postgres_example_runs(name: str, pg_server: Server) -> None:
    """The example runs against moto and a password-checking PostgreSQL as its header says."""
    env = dict(os.environ)
    env.update(PGHOST=pg_server.host, PGPORT=str(pg_server.port), PGUSER=pg_server.admin_user)
    env.update(PGPASSWORD=pg_server.admin_password, PGDATABASE=pg_server.dbname)
    # The drivers' deprecations fail it (psycopg_pool warns when a pool is built without open=).
    _run(name, env, options=("-W", "error::DeprecationWarning"))


def test_every_psycopg_pool_in_the_docs_and_examples_passes_open() -> None:
    """Each ``ConnectionPool(...)`` shown passes ``open=``: psycopg_pool warns about its implicit default."""
    sources = sorted(DOCS.glob("*.md")) + sorted(EXAMPLES.glob("*.py"))
    calls = [
        (path.name, call)
        for path in sources
        for call in re.findall(r"\bConnectionPool\((?:[^()]|\([^()]*\))*\)", path.read_text())
    ]
    assert calls  # the pattern still finds the pools
    assert [(name, call) for name, call in calls if not re.search(r"\bopen=", call)] == []


def _defined_names(path: Path) -> set[str]:
    """``name`` and ``Class::name`` for every test function and class of a test module."""
    import ast

    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    return names


def test_every_test_the_docs_name_exists() -> None:
    """Each ``tests/x.py::name`` (and each following ``::name`` on its line) in the docs names a real test."""
    reference = re.compile(r"`(tests/[\w/]+\.py)?((?:::\w+)*)(?:\[[^\]`]*\])?`")
    checked = 0
    for page in [*sorted(DOCS.glob("*.md")), EXAMPLES.parent / "README.md"]:
        for number, line in enumerate(page.read_text().splitlines(), start=1):
            current: Path | None = None
            for match in reference.finditer(line):
                file, names = match.groups()
                if file:
                    current = EXAMPLES.parent / file
                    assert current.is_file(), f"{page.name}:{number}: {file} does not exist"
                if not names or current is None:
                    continue
                name = names.removeprefix("::")
                assert name in _defined_names(current), f"{page.name}:{number}: no test {name} in {current.name}"
                checked += 1
    assert checked > 50


def test_hit_cost_figures_agree_across_the_docs() -> None:
    """README, migrating.md and performance.md give the same hit-cost ranges for secretcache and its peers."""
    ranges = re.compile("\\d[\\d.]*\u2013\\d[\\d.]*\u00d7")  # "1.4-2.9x", en dash and times sign
    expect = (DOCS / "performance.md").read_text().partition("## Method")[0]
    figures = ranges.findall(expect)
    assert len(figures) == 3, figures  # secretcache, the official library, Powertools
    readme = (EXAMPLES.parent / "README.md").read_text().splitlines()
    row = next(line for line in readme if line.startswith("| cost of a hit"))
    assert ranges.findall(row) == figures
    assert ranges.findall((DOCS / "migrating.md").read_text()) == [figures[1]]


PAGES = [EXAMPLES.parent / "README.md", *sorted(DOCS.glob("*.md"))]


def _fenced(page: Path, languages: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """``(line, code)`` of each fenced block in ``languages`` of ``page``, ``--8<--`` includes left out."""
    lines = page.read_text().splitlines()
    number = 0
    while number < len(lines):
        opening = re.match(r"( *)(```+)\s*([\w+-]*)", lines[number])
        if opening is None:
            number += 1
            continue
        indent, fence, language = opening.groups()
        end = next(i for i in range(number + 1, len(lines)) if lines[i].strip() == fence)
        code = "\n".join(line.removeprefix(indent) for line in lines[number + 1 : end])
        if language in languages and "--8<--" not in code:
            yield number + 1, code
        number = end + 1


def _resolve(names: dict[str, Any], node: ast.expr) -> Any:
    """The public object a ``name`` or ``name.attr...`` of a snippet stands for, or ``None``."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(names, node.value)
        if base is not None:
            assert hasattr(base, node.attr), f"{ast.unparse(node)}: {base!r} has no attribute {node.attr!r}"
            return getattr(base, node.attr)
    return None


def test_every_python_block_in_the_docs_compiles_and_calls_what_exists() -> None:
    """Each python block compiles; each ``from secretcache... import X`` resolves; each call binds its arguments.

    A name a page imports in any of its blocks is known in all of them (a page imports once and
    then uses the names); ``cache`` is a ``SecretCache``, or an ``AsyncSecretCache`` in a block
    that awaits or builds one.
    """
    import secretcache

    checked = 0
    for page in PAGES:
        trees = []
        for line, code in _fenced(page, ("python", "py")):
            flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # an asyncio snippet awaits at top level
            trees.append((f"{page.name}:{line}", code, compile(code, f"{page.name}:{line}", "exec", flags=flags)))
        names: dict[str, Any] = {}
        for where, _, tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "secretcache":
                    module = importlib.import_module(node.module or "")
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
                        names[alias.asname or alias.name] = getattr(module, alias.name)
        for where, code, tree in trees:
            asynchronous = "await " in code or "AsyncSecretCache(" in code
            names["cache"] = secretcache.AsyncSecretCache if asynchronous else secretcache.SecretCache
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                try:
                    called = _resolve(names, node.func)
                except AssertionError as err:
                    raise AssertionError(f"{where}: {err}") from None
                if called is None or any(isinstance(arg, ast.Starred) for arg in node.args):
                    continue
                keywords = {keyword.arg: None for keyword in node.keywords if keyword.arg is not None}
                try:
                    inspect.signature(called).bind_partial(*node.args, **keywords)
                except TypeError as err:
                    raise AssertionError(f"{where}: {ast.unparse(node)}: {err}") from None
                checked += 1
    assert checked > 40  # the blocks still call the API


def _command_lines(page: Path) -> Iterator[tuple[str, str, bool]]:
    """``(where, arguments, synopsis)`` of each ``secretcache`` command in the shell blocks of ``page``.

    A synopsis (``SECRET_ID``, ``COMMAND`` or ``[--option]`` in it) is taken whole, its
    continuation lines (indented, starting with ``[``) joined to it; a command line ends at a pipe,
    ``;``, ``&&``, ``)``, ``#`` or a redirection.
    """
    program = r"(?:\S*python3?\s+-m\s+secretcache|(?<![\w/.-])secretcache)(?:\s+|$)"
    command = re.compile(r"(?:^|\$\(|[|;&]\s*)\s*" + program + r"([^|;&)#>]*)")
    for line, code in _fenced(page, ("sh", "bash", "shell", "console", "text")):
        for text in re.sub(r"\n\s+(?=\[)", " ", code.replace("\\\n", " ")).splitlines():
            text = text.strip().removeprefix("$ ")
            synopsis = re.match(program + r"(.*(?:SECRET_ID|COMMAND|\[--).*)", text)
            if synopsis:
                yield f"{page.name}:{line}", synopsis.group(1), True
                continue
            for found in command.finditer(text):
                yield f"{page.name}:{line}", found.group(1).strip(), False


def test_every_command_line_in_the_docs_parses() -> None:
    """Each ``secretcache ...`` command shown parses; each option of a synopsis exists for its command."""
    from secretcache._cli_args import _parser, parse

    parser, commands = _parser()
    options = {
        name: {flag for action in sub._actions for flag in action.option_strings} for name, sub in commands.items()
    }
    options[""] = {flag for action in parser._actions for flag in action.option_strings}
    checked = 0
    for page in PAGES:
        for where, arguments, synopsis in _command_lines(page):
            if synopsis:  # its options must exist for its command
                name = next((word for word in arguments.split() if word in commands), "")
                unknown = set(re.findall(r"--[a-z][-a-z]*", arguments)) - options[name] - options[""]
                assert not unknown, f"{where}: secretcache {name} has no {sorted(unknown)}"
            else:
                errors = io.StringIO()
                code: str | int | None = 0
                with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
                    try:
                        parse(shlex.split(arguments))
                    except SystemExit as exit:
                        code = exit.code
                assert code == 0, f"{where}: secretcache {arguments}: {errors.getvalue().strip()}"
            checked += 1
    assert checked >= 12  # the pattern still finds the commands
