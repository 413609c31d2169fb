"""Checks of scripts/api-fuzz.sh that replace two built-in ones on a few operations, narrowly.

- The upstream vnets contract answers 500 to some client errors (a malformed or missing
  endpoint, a port that is not a member), and keeping upstream's codes is the point of that
  API. On those operations `not_a_server_error` is off (scripts/api-fuzz/schemathesis.toml)
  and `upstream_server_errors` takes its place: a 500 whose message names one of those causes
  passes, any other 5xx fails.
- Two IPAM rules of `POST /api/v1/networks` relate items of a list to each other (at most
  one CIDR per address family; pod ranges inside a CIDR), which JSON Schema cannot say. There
  `positive_data_acceptance` is off and `ipam_rules_only` takes its place: a schema-valid body
  may be refused with 400 only for one of those two rules.

Every expected message is the controller's own text; a change of wording fails here loudly.
"""

import json
import re

import schemathesis
from schemathesis.core.failures import Failure

# Operation -> the messages of the 500s upstream's contract gives there.
MALFORMED = r"malformed port id "
NO_ENDPOINTS = r"networkEndpoints is required$"
NOT_MEMBER = r"port \S+ is not a member of any network$"
UPSTREAM_500 = {
    "POST /onos/vnets/api": [MALFORMED],
    "POST /onos/vnets/api/port": [MALFORMED, NO_ENDPOINTS],
    "DELETE /onos/vnets/api/port": [MALFORMED, NO_ENDPOINTS, NOT_MEMBER],
    "POST /onos/vnets/api/mirror-port": [MALFORMED],
}

# Operation -> the messages of the 400s a schema-valid body may get there.
CROSS_FIELD_400 = {
    "POST /api/v1/networks": [
        r"invalid IPAM settings: at most one IPv4 and one IPv6 CIDR$",
        r"invalid IPAM settings: pod range \S+ is not inside a CIDR$",
    ],
}


def _message(response) -> str:
    try:
        body = json.loads(response.content)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    message = body.get("message")
    return message if isinstance(message, str) else ""


def _label(case) -> str:
    return f"{case.method.upper()} {case.operation.path}"


@schemathesis.check
def upstream_server_errors(ctx, response, case):
    """not_a_server_error, except the 500s of the upstream contract (see the module doc)."""
    label = _label(case)
    allowed = UPSTREAM_500.get(label)
    if allowed is None or response.status_code < 500:
        return None
    message = _message(response)
    if response.status_code == 500 and any(re.match(p, message) for p in allowed):
        return None
    raise Failure(
        operation=label,
        title="Server error outside the upstream contract",
        message=f"{response.status_code}: {message!r}; upstream answers 500 only for: {allowed}",
    )


@schemathesis.check
def ipam_rules_only(ctx, response, case):
    """positive_data_acceptance, except the cross-field IPAM rules (see the module doc)."""
    label = _label(case)
    allowed = CROSS_FIELD_400.get(label)
    meta = case.meta
    if allowed is None or meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status in (401, 403, 404, 409, 429) or status >= 500:
        return None
    message = _message(response)
    if status == 400 and any(re.match(p, message) for p in allowed):
        return None
    raise Failure(
        operation=label,
        title="Schema-valid request rejected",
        message=f"{status}: {message!r}; only these rules may refuse a schema-valid body: {allowed}",
    )
