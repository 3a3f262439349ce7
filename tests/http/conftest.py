"""The route tests' client checks every JSON answer against the OpenAPI document, closed
(:mod:`tests.conformance`): a test here that gets an answer the document does not
describe field by field fails, whatever it asserts itself."""

from tests.conformance import conforming_client_fixture as _client  # noqa: F401 - the `client` fixture
