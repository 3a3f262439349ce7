"""The route tests' client checks every JSON answer against the OpenAPI document, closed
(:mod:`tests.conformance`): a test here that gets an answer the document does not
describe field by field fails, whatever it asserts itself.

``resolver``: names of our own for the webhook targets (Trio's custom hostname resolver).
"""

import socket

import pytest
import trio

from tests.conformance import conforming_client_fixture as _client  # noqa: F401 - the `client` fixture


class Resolver(trio.abc.HostnameResolver):
    """Names of our own: each lookup of a name answers its next set of addresses (the last
    set for ever after); an unknown name does not resolve."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        sets = self.answers[name]
        addresses = sets.pop(0) if len(sets) > 1 else sets[0]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    async def getnameinfo(self, sockaddr, flags):
        raise NotImplementedError


@pytest.fixture(name="resolver")
async def _resolver():
    resolver = Resolver({})
    previous = trio.socket.set_custom_hostname_resolver(resolver)
    yield resolver
    trio.socket.set_custom_hostname_resolver(previous)
