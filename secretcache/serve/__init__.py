"""``secretcache serve``: one cache per host, speaking the AWS Secrets Manager Agent's HTTP protocol.

The protocol (``_protocol``) and the SSRF token (``_token``) use the standard library only, so
:mod:`secretcache.agent` can import them without the ``serve`` extra; the HTTP stack lives in
the transport modules, imported by the command alone.
"""

from secretcache.serve._token import ServeConfigError, TokenError

__all__ = ["ServeConfigError", "TokenError"]
