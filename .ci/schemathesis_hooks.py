"""Schemathesis hooks for `.ci/schemathesis`: what OpenAPI cannot say about the partner API.

A record's body is valid under the schema of the version its `Schema-Version` header names (the
newest accepted one when it is absent). OpenAPI 3.1 cannot make a body's schema depend on a
header, so the partner document gives a record body as valid under any accepted version (`anyOf`)
and says in words that a record valid only under another version than the one named is answered
422. Schemathesis draws the header and the body independently, so its `positive_data_acceptance`
check would count such a 422 as a valid request refused. This hook drops exactly that failure,
and only when the body is invalid under the declared version's schema (structurally: formats are
not checked here, so a body that only a format could make invalid keeps its failure). Every other
failure, and every other check, stands.
"""

import re

import jsonschema_rs  # Schemathesis's own JSON Schema validator
import schemathesis

# The operations whose body is a record of the type in the path.
RECORD_OPERATION = re.compile(r"^/v1/(?:records|validate|requests)/([^/{}]+)$")


def header(headers, name):
    """The value of header `name` (any case), or None."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep a failure unless it is a 422 to a record invalid under the version it declares."""
    if failure.code != "ST202" or response.status_code != 422:
        return True
    operation = RECORD_OPERATION.match(case.operation.path)
    version = header(case.headers, "Schema-Version")
    if operation is None or not isinstance(version, str):
        return True
    components = case.operation.schema.raw_schema.get("components", {})
    # The document names each version's schema `<record type>.<MAJOR>.<MINOR>`.
    component = f"{operation.group(1)}.{version}"
    if component not in components.get("schemas", {}):
        return True
    declared = jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": components}, validate_formats=False
    )
    return declared.is_valid(case.body)
