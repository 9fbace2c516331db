"""Everything the Powertools adapter takes from aws-lambda-powertools, imported in one place.

Without the extra installed, importing any part of the adapter raises one ``ImportError`` that
says what to install, from here.
"""

from __future__ import annotations

try:
    from aws_lambda_powertools.shared.constants import PARAMETERS_MAX_AGE_ENV
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import BaseProvider, SecretsProvider, exceptions
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_MAX_AGE_SECS, DEFAULT_PROVIDERS
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
except ImportError as err:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "secretcache.compat.powertools needs aws-lambda-powertools: pip install 'secretcache[powertools]'"
    ) from err

try:
    from aws_lambda_powertools.warnings import PowertoolsDeprecationWarning as ConfigWarning
except ImportError:  # pragma: no cover - Powertools 2.x, before its own warning class
    ConfigWarning = DeprecationWarning  # type: ignore[assignment,misc]

__all__ = [
    "DEFAULT_MAX_AGE_SECS",
    "DEFAULT_PROVIDERS",
    "PARAMETERS_MAX_AGE_ENV",
    "BaseProvider",
    "ConfigWarning",
    "GetParameterError",
    "SecretsProvider",
    "TransformParameterError",
    "exceptions",
    "parameters",
]
