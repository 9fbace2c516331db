"""The public surface: a thin root whose __all__ is exactly its public names, typed, versioned,
cheap to import and reporting public module paths; and the packaging metadata."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import json
import pickle
import re
import subprocess
import sys
import traceback
import types
import typing
from pathlib import Path

import pytest

import secretcache

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
PUBLIC_MODULES = [
    "secretcache",
    "secretcache.agent",
    "secretcache.aws_lambda",
    "secretcache.compat.aws_secretsmanager_caching",
    "secretcache.compat.powertools",
    "secretcache.compat.powertools.parameters",
    "secretcache.db",
    "secretcache.events",
    "secretcache.otel",
    "secretcache.pydantic",
    "secretcache.redaction",
    "secretcache.testing",
]
LAZY = {"AsyncSecretCache", "__version__"}  # resolved by the root's module __getattr__ on first use


def test_all_matches_public_names() -> None:
    """__all__ lists every public name of the package root and nothing else, sorted."""
    public = {name for name in vars(secretcache) if not name.startswith("_")} | LAZY
    modules = {name for name in public if type(getattr(secretcache, name)).__name__ == "module"}
    assert set(secretcache.__all__) == public - modules
    assert list(secretcache.__all__) == sorted(secretcache.__all__)


def test_exported_objects_have_docstrings() -> None:
    """Every exported class and function documents itself."""
    for name in secretcache.__all__:
        if name == "__version__":
            continue
        assert (getattr(secretcache, name).__doc__ or "").strip(), name


def test_version_comes_from_package_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert secretcache.__version__ == importlib.metadata.version("secretcache")


def test_package_is_typed() -> None:
    """The py.typed marker ships with the package."""
    assert (Path(secretcache.__file__).parent / "py.typed").is_file()


def test_error_tree() -> None:
    """Every typed error derives from SecretCacheError; argument errors are also ValueErrors."""
    for name in secretcache.__all__:
        obj = getattr(secretcache, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, secretcache.SecretCacheError)
    assert issubclass(secretcache.InvalidSecretRequestError, ValueError)
    assert issubclass(secretcache.SecretFormatError, ValueError)


def run_fresh(code: str) -> typing.Any:
    """Run ``code`` in a fresh interpreter and return what it printed, parsed as JSON."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_import_loads_neither_asyncio_nor_package_metadata() -> None:
    """Importing secretcache (and its Lambda, events and db modules) loads neither asyncio nor importlib.metadata."""
    code = """if True:
        import json, sys
        import botocore.session  # the reference: what every boto3 user loads anyway
        reference = sorted(sys.modules)
        # botocore itself loads importlib.metadata; hide both so that any import by us fails.
        sys.modules["asyncio"] = sys.modules["importlib.metadata"] = None
        import secretcache, secretcache.aws_lambda, secretcache.events, secretcache.redaction, secretcache.db
        print(json.dumps(reference))
    """
    reference = run_fresh(code)
    code = """if True:
        import json, sys
        import secretcache
        listed = "AsyncSecretCache" in dir(secretcache) and "__version__" in dir(secretcache)
        print(json.dumps({"loaded": sorted(sys.modules), "listed": listed}))
    """
    fresh = run_fresh(code)
    assert "asyncio" not in fresh["loaded"] or "asyncio" in reference
    assert "secretcache._aio" not in fresh["loaded"]
    unwanted = ("opentelemetry", "secretcache.compat", "aws_lambda_powertools", "aws_secretsmanager_caching")
    assert not [name for name in fresh["loaded"] if name.startswith(unwanted)]
    assert fresh["listed"]


def test_otel_extra_needs_the_api_only_and_says_so_when_missing() -> None:
    """``secretcache[otel]`` pulls in opentelemetry-api alone; without it, the import error says what to install."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [requirement.split(">")[0] for requirement in extras["otel"]] == ["opentelemetry-api"]
    code = """if True:
        import json, sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        try:
            import secretcache.otel
        except ImportError as error:
            print(json.dumps(str(error)))
    """
    assert "pip install 'secretcache[otel]'" in run_fresh(code)


def test_lazy_names_resolve_in_a_fresh_interpreter() -> None:
    """__version__ and AsyncSecretCache load on first use and then stay put."""
    code = """if True:
        import json, sys
        import secretcache
        from secretcache import AsyncSecretCache
        print(json.dumps({
            "version": secretcache.__version__,
            "same": secretcache.AsyncSecretCache is AsyncSecretCache,
            "module": AsyncSecretCache.__module__,
            "asyncio": "asyncio" in sys.modules,
            "cached": "__version__" in vars(secretcache) and "AsyncSecretCache" in vars(secretcache),
        }))
    """
    assert run_fresh(code) == {
        "version": importlib.metadata.version("secretcache"),
        "same": True,
        "module": "secretcache",
        "asyncio": True,
        "cached": True,
    }


def test_unknown_attribute_is_an_attribute_error() -> None:
    """The root's lazy loader refuses names it does not know, as a module without one would."""
    with pytest.raises(AttributeError, match="no attribute 'SecretCash'"):
        _ = secretcache.SecretCash  # type: ignore[attr-defined]


def test_errors_report_the_public_module() -> None:
    """SecretNotFoundError lives at secretcache.SecretNotFoundError for users, tracebacks and pickle."""
    assert secretcache.SecretNotFoundError.__module__ == "secretcache"
    try:
        try:
            raise KeyError("ResourceNotFoundException")
        except KeyError as err:
            raise secretcache.SecretNotFoundError("secret 'db' not found", secret_id="db") from err
    except secretcache.SecretNotFoundError as error:
        text = "".join(traceback.format_exception(error))
    assert "secretcache.SecretNotFoundError: secret 'db' not found" in text
    assert "_errors" not in text.splitlines()[-1]


@pytest.mark.parametrize("name", [n for n in secretcache.__all__ if n.endswith("Error")])
def test_errors_survive_pickle_and_copy(name: str) -> None:
    """Every typed error pickles and copies with its class, message and secret id."""
    error = getattr(secretcache, name)("secret 'db' failed", secret_id="db")
    for clone in (round_trip(error), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error)
        assert str(clone) == "secret 'db' failed"
        assert clone.secret_id == "db"
    assert round_trip(type(error)) is type(error)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_objects_report_a_public_module(module_name: str) -> None:
    """Every public class reports the module it is exported from; functions a public home; pickle finds both."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if not isinstance(obj, (type, types.FunctionType)):
            continue
        home = obj.__module__
        assert not any(part.startswith("_") for part in home.split(".")), f"{module_name}.{name}: {home}"
        assert getattr(sys.modules[home], obj.__qualname__) is obj
        if isinstance(obj, type):
            assert home == module_name, f"{module_name}.{name}: {home}"
            assert round_trip(obj) is obj
            typing.get_type_hints(obj)  # annotations still resolve after the move


def round_trip(obj: typing.Any) -> typing.Any:
    return pickle.loads(pickle.dumps(obj))  # noqa: S301 - our own bytes


def pyproject() -> dict[str, typing.Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_metadata() -> None:
    """The license is an SPDX expression with its file; no legacy license classifier repeats it."""
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text


def test_sdist_carries_what_the_docs_build_needs() -> None:
    """The sdist includes the docs sources, their examples, the scripts and the license."""
    include = set(pyproject()["tool"]["hatch"]["build"]["targets"]["sdist"]["include"])
    assert {"secretcache", "docs", "examples", "scripts", "mkdocs.yml", "LICENSE", "README.md"} <= include


def test_no_placeholder_project_urls() -> None:
    """Project URLs (pyproject, mkdocs.yml) are real https addresses or absent, never placeholders.

    The project has no public home yet, so it declares none; once it does, all five labels come
    together.
    """
    urls = pyproject()["project"].get("urls", {})
    assert not urls or set(urls) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    site = (ROOT / "mkdocs.yml").read_text()
    for url in [*urls.values(), *re.findall(r"^(?:repo_url|site_url):\s*(\S+)", site, re.MULTILINE)]:
        assert url.startswith("https://"), url
        assert ".invalid" not in url, url
        assert "example." not in url, url
