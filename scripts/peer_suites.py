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
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

PEER = "aws-secretsmanager-caching==1.2.0"

INTERNALS = "tests the original's internals (`cache.items`, `cache.lru`, `_client`, `_get_cached_secret`)"
HOOK = "tests `secret_cache_hook`, which the adapter does not support (values are immutable `SecretValue`s)"

# Adapter tests that do not pass, by "file::class::test" (or "file" for a whole module that cannot
# import), with the reason; docs/migrating.md has the same table.
EXPECTED: dict[str, str] = {
    "test_items.py": INTERNALS,
    "test_lru.py": INTERNALS,
    "test_cache_hook.py": HOOK,
    "test_aws_secretsmanager_caching.py::TestAwsSecretsManagerCaching::test_default_session": INTERNALS,
    "test_aws_secretsmanager_caching.py::TestAwsSecretsManagerCaching::test_refresh_secret_now": INTERNALS,
}

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
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own report
        parts = [*case.get("classname", "").split("."), case.get("name", "")]
        first = next(i for i, part in enumerate(parts) if part.startswith("test_"))  # test.unit.test_x...
        key = "::".join([f"{parts[first]}.py", *parts[first + 1 :]]) if parts[first] != parts[-1] else f"{parts[-1]}.py"
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


def expected_reason(key: str) -> str | None:
    """The listed reason a test does not pass, by its id or its module."""
    return EXPECTED.get(key) or EXPECTED.get(key.split("::")[0])


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
        results = {
            "aws-secretsmanager-caching 1.2.0 itself": run(source, "peer", []),
            "secretcache.compat.aws_secretsmanager_caching": run(source, "adapter", [shim.parent, root]),
        }
    problems = []
    for label, outcomes in results.items():
        passed = sum(outcome == "passed" for outcome, _ in outcomes.values())
        print(f"== {label}: {passed} of {len(outcomes)} passed")
        for key, (outcome, message) in sorted(outcomes.items()):
            if outcome != "passed":
                print(f"   {outcome}: {key}: {message}")
    adapter = results["secretcache.compat.aws_secretsmanager_caching"]
    for key, (outcome, _) in sorted(adapter.items()):
        reason = expected_reason(key)
        if outcome != "passed" and reason is None:
            problems.append(f"unexpected {outcome}: {key}")
        elif outcome == "passed" and reason is not None:
            problems.append(f"passes now, remove it from EXPECTED and docs/migrating.md: {key}")
    for problem in problems:
        print(f"PEER-SUITES ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
