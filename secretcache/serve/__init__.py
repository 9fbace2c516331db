"""``secretcache serve``: one cache per host, speaking the AWS Secrets Manager Agent's HTTP protocol.

The protocol (``_protocol``) uses the standard library only and the SSRF token is read by
``secretcache._token``, shared with :mod:`secretcache.agent`; the HTTP stack lives in
the transport modules, imported by the command alone.
"""

from secretcache._token import ServeConfigError, TokenError

__all__ = ["ServeConfigError", "TokenError"]
