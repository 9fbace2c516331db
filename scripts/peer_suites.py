"""Run the official library's own unit tests, unchanged, against the real package and against our adapter.

The source distribution of ``aws-secretsmanager-caching`` 1.2.0 (it ships ``test/unit``) is downloaded
from the package index into a temporary directory at run time; nothing of it is kept. Its tests run
twice with this interpreter: against the installed real package, then with a shim directory first on
``sys.path`` whose package ``aws_secretsmanager_caching`` re-exports
``secretcache.compat.aws_secretsmanager_caching`` (and imports ``botocore.session``, as the original
does: the peer's tests reach ``botocore.session`` through it).

Each adapter test that does not pass must be listed in ``EXPECTED`` with its reason (the table in
docs/migrating.md); the script exits non-zero when another test fails, or when a listed test passes
(then the list and the table are out of date). Run it as ``scripts/peer-suites``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

PEER = "aws-secretsmanager-caching==1.2.0"

INTERNALS = "tests the original's internals (`cache.items`, `cache.lru`, `_client`, `_get_cached_secret`)"
HOOK = "tests `secret_cache_hook`, which the adapter does not support (values are immutable `SecretValue`s)"

CALL_PATTERN = (
    "its Stubber expects `DescribeSecret`, then `GetSecretValue` by `VersionId`; the adapter calls "
    "`GetSecretValue` by `VersionStage` (one call per label per TTL): apply the Stubber recipe"
)
NO_VALUE = (
    "a stubbed `GetSecretValue` answer without `SecretString` or `SecretBinary` (which Secrets Manager "
    "never sends) is refused as malformed; the original returns `None`"
)
_T = "test_aws_secretsmanager_caching.py::TestAwsSecretsManagerCaching::"
_K = "test_decorators.py::TestAwsSecretsManagerCachingInjectKeywordedSecretStringDecorator::"
_S = "test_decorators.py::TestAwsSecretsManagerCachingInjectSecretStringDecorator::"

# Adapter tests that do not pass, by "file::class::test" (or "file" for a module that cannot
# import), with the reason; docs/migrating.md has the same table. The first run uses the peer's
# tests unchanged, the second with docs/migrating.md's Stubber recipe applied (RECIPE below).
EXPECTED_WITH_RECIPE: dict[str, str] = {
    "test_items.py": INTERNALS,
    "test_lru.py": INTERNALS,
    "test_cache_hook.py": HOOK,
    _T + "test_default_session": INTERNALS,
    _T + "test_refresh_secret_now": INTERNALS,
    _T + "test_get_secret_string_empty": NO_VALUE,
    _T + "test_get_secret_string_missing": NO_VALUE,
}
EXPECTED: dict[str, str] = {
    **EXPECTED_WITH_RECIPE,
    **{
        _T + name: CALL_PATTERN
        for name in (
            "test_get_secret_binary",
            "test_get_secret_binary_no_versions",
            "test_get_secret_string",
            "test_get_secret_string_exception",
            "test_get_secret_string_multiple",
            "test_get_secret_string_no_current",
            "test_get_secret_string_no_versions",
            "test_get_secret_string_none",
            "test_get_secret_string_refresh",
            "test_get_secret_string_stage",
        )
    },
    **{_K + name: CALL_PATTERN for name in ("test_invalid_json", "test_missing_key", "test_valid_json")},
    **{_K + name: CALL_PATTERN for name in ("test_valid_json_with_mixed_args", "test_valid_json_with_no_secret_kwarg")},
    **{_S + name: CALL_PATTERN for name in ("test_string", "test_string_with_additional_kwargs")},
    _S + "test_string_with_class_method": CALL_PATTERN,
    _T + "test_get_secret_string_empty": f"{CALL_PATTERN}; then: {NO_VALUE}",
    _T + "test_get_secret_string_missing": f"{CALL_PATTERN}; then: {NO_VALUE}",
}
RECIPE = [
    (
        "        stubber.add_response('describe_secret', response, expected_params)\n"
        "        if version_response is not None:\n"
        "            stubber.add_response('get_secret_value', version_response)\n",
        "        current = {'SecretId': 'test', 'VersionStage': 'AWSCURRENT'}\n"
        "        labels = [stages for stages in response.get('VersionIdsToStages', {}).values()]\n"
        "        if version_response is not None and any('AWSCURRENT' in stages for stages in labels):\n"
        "            stubber.add_response('get_secret_value', version_response, current)\n"
        "        else:\n"
        "            stubber.add_client_error(\n"
        "                'get_secret_value', 'ResourceNotFoundException', expected_params=current)\n"
        "            stubber.add_response('describe_secret', response, expected_params)\n",
        4,  # test_aws_secretsmanager_caching.py, test_decorators.py (2) and test_cache_hook.py
    ),
    ("stubber.add_client_error('describe_secret')", "stubber.add_client_error('get_secret_value')", 1),
]

PEER_RUN = "aws-secretsmanager-caching 1.2.0 itself"
ADAPTER = "secretcache.compat.aws_secretsmanager_caching"
RECIPE_RUN = "the adapter, with docs/migrating.md's Stubber recipe applied to the peer's stubs"

SHIM = {
    "__init__.py": (
        '"""Shim: the official package\'s names, served by secretcache\'s adapter."""\n'
        "import botocore.session  # noqa: F401 - the original imports it; the peer's tests rely on that\n"
        "from secretcache.compat.aws_secretsmanager_caching import (\n"
        "    InjectKeywordedSecretString, InjectSecretString, SecretCache, SecretCacheConfig)  # noqa: F401\n"
    ),
    "config.py": "from secretcache.compat.aws_secretsmanager_caching import SecretCacheConfig  # noqa: F401\n",
    "secret_cache.py": "from secretcache.compat.aws_secretsmanager_caching import SecretCache  # noqa: F401\n",
    "decorators.py": (
        "from secretcache.compat.aws_secretsmanager_caching import (  # noqa: F401\n"
        "    InjectKeywordedSecretString, InjectSecretString)\n"
    ),
}


def download(into: Path) -> Path:
    """Download and unpack the peer's source distribution; return its unpacked directory."""
    subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", PEER, "-d", str(into)],
        check=True,
    )
    (archive,) = into.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - an older patch release; the archive comes from the package index
            tar.extractall(into)  # noqa: S202
    (source,) = (path for path in into.iterdir() if path.is_dir())
    return source


def apply_recipe(source: Path, into: Path) -> Path:
    """A copy of the peer's tests with the Stubber recipe applied; fails if the peer's code moved."""
    shutil.copytree(source / "test", into / "test")
    counts = [0] * len(RECIPE)
    for path in (into / "test" / "unit").glob("test_*.py"):
        text = path.read_text()
        for number, (old, new, _) in enumerate(RECIPE):
            counts[number] += text.count(old)
            text = text.replace(old, new)
        path.write_text(text)
    if counts != [expected for _, _, expected in RECIPE]:
        raise SystemExit(f"PEER-SUITES ERROR: the recipe matched {counts} times, not as expected: update RECIPE")
    return into


def run(source: Path, label: str, pythonpath: list[Path]) -> dict[str, tuple[str, str]]:
    """Run ``test/unit`` under ``source``; return each test's outcome and first message line."""
    report = source / f"{label}.xml"
    ini = source / "peer-pytest.ini"
    ini.write_text("[pytest]\n")  # our pyproject's settings (filterwarnings=error, coverage) must not apply
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SECRETCACHE_"))}
    # Dummy credentials: the peer's tests build clients, and Stubber answers before any request.
    env.update(AWS_DEFAULT_REGION="us-west-2", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # noqa: S106
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in pythonpath)
    subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-m", "pytest", "test/unit", "-c", str(ini), "--rootdir", str(source),
         "-p", "no:cacheprovider", "-p", "no:asyncio", "-q",
         "--continue-on-collection-errors", "-o", "addopts=", f"--junitxml={report}"],
        cwd=source, env=env, check=False, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return outcomes_of(report)


def outcomes_of(report: Path) -> dict[str, tuple[str, str]]:
    """Each test's outcome and first message line in a junit report.

    Keyed ``file::class::test``, or ``file`` for a module that failed to import.
    """
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own report
        # "test.unit.test_x.TestClass" + "test_y"; a module that failed to import: "" + "test.unit.test_x"
        parts = ".".join(filter(None, [case.get("classname"), case.get("name")])).split(".")
        first = next(i for i, part in enumerate(parts) if part.startswith("test_"))
        key = "::".join([f"{parts[first]}.py", *parts[first + 1 :]])
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                lines = (found.get("message") or found.text or "").strip().splitlines()
                message = lines[0][:160] if lines else ""
                break
        outcomes[key] = (outcome, message)
    return outcomes


def check(outcomes: dict[str, tuple[str, str]], expected: dict[str, str]) -> list[str]:
    """Each test that fails without a listed reason, or passes despite one."""
    problems = []
    for key, (outcome, _) in sorted(outcomes.items()):
        reason = expected.get(key) or expected.get(key.split("::")[0])
        if outcome != "passed" and reason is None:
            problems.append(f"unexpected {outcome}: {key}")
        elif outcome == "passed" and reason is not None:
            problems.append(f"passes now, remove it from the expected failures and docs/migrating.md: {key}")
    return problems


def main() -> int:
    """Run both suites, print the counts and the failures; 0 when the adapter meets its target."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="peer-suites-") as tmp:
        work = Path(tmp)
        source = download(work / "sdist")
        shim = work / "shim" / "aws_secretsmanager_caching"
        shim.mkdir(parents=True)
        for name, text in SHIM.items():
            (shim / name).write_text(text)
        adapter_path = [shim.parent, root]
        recipe = apply_recipe(source, work / "recipe")
        results = {
            PEER_RUN: run(source, "peer", []),
            ADAPTER: run(source, "adapter", adapter_path),
            RECIPE_RUN: run(recipe, "recipe", adapter_path),
        }
    for label, outcomes in results.items():
        passed = sum(outcome == "passed" for outcome, _ in outcomes.values())
        modules = sum("::" not in key for key in outcomes)
        unimported = f"; {modules} test modules could not be imported" if modules else ""
        print(f"== {label}: {passed} of {len(outcomes) - modules} tests passed{unimported}")
        for key, (outcome, message) in sorted(outcomes.items()):
            if outcome != "passed":
                print(f"   {outcome}: {key}: {message}")
    peer = results[PEER_RUN]
    broken = [key for key in sorted(peer) if peer[key][0] != "passed"]
    problems = [f"{PEER_RUN}: {key} does not pass: the environment is broken" for key in broken]
    problems += [
        f"{label}: {problem}"
        for label, expected in ((ADAPTER, EXPECTED), (RECIPE_RUN, EXPECTED_WITH_RECIPE))
        for problem in check(results[label], expected)
    ]
    for problem in problems:
        print(f"PEER-SUITES ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
