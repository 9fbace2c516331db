"""A botocore ``Stubber`` test written for aws-secretsmanager-caching, moved to secretcache's adapter.

The original calls ``DescribeSecret``, then ``GetSecretValue`` by the version id it found; the
adapter calls ``GetSecretValue`` by staging label, once per label per TTL, so the stubs change.
No AWS account or network is needed: the Stubber answers every call.

Run it (secretcache alone: botocore's Stubber comes with boto3):
    pip install -e . && python examples/official_stubber.py
"""

import botocore.session
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from secretcache.compat.aws_secretsmanager_caching import SecretCache

client = botocore.session.get_session().create_client("secretsmanager", region_name="us-west-2")
stubber = Stubber(client)

# Before, for the original:
#   stubber.add_response("describe_secret", {"VersionIdsToStages": {VERSION_ID: ["AWSCURRENT"]}}, {"SecretId": "test"})
#   stubber.add_response("get_secret_value", {"SecretString": "mysecret"})
# After, for the adapter: one GetSecretValue by staging label (AWSCURRENT is always named).
current = {"SecretId": "test", "VersionStage": "AWSCURRENT"}
stubber.add_response("get_secret_value", {"SecretString": "mysecret"}, current)

# A label no version carries: GetSecretValue answers ResourceNotFoundException, then DescribeSecret
# shows that the secret exists, and the read returns None, as the original's does.
pending = {"SecretId": "test", "VersionStage": "AWSPENDING"}
stubber.add_client_error("get_secret_value", "ResourceNotFoundException", expected_params=pending)
stubber.add_response("describe_secret", {"Name": "test"}, {"SecretId": "test"})

# An error the original got from DescribeSecret now comes from GetSecretValue.
other = {"SecretId": "other", "VersionStage": "AWSCURRENT"}
stubber.add_client_error("get_secret_value", "AccessDeniedException", expected_params=other)

with stubber:
    cache = SecretCache(client=client)
    reads = [cache.get_secret_string("test") for _ in range(10)]
    print("10 reads, 1 call:", reads == ["mysecret"] * 10)
    print("AWSPENDING:", cache.get_secret_string("test", "AWSPENDING"))
    try:
        cache.get_secret_string("other")
    except ClientError as err:  # AccessDeniedException has no modelled class
        print("error:", err.response["Error"]["Code"])
    stubber.assert_no_pending_responses()
    print("every stub used")
