"""The guard resolves once, checks every address, and pins the connection to what it checked."""

from __future__ import annotations

import socket

import pytest

from tests.webhooks.helpers import STAND_IN, ScriptedResolver, stand_in_policy
from webhooks.guard import DEVELOPMENT, STRICT, Guard, UnsafeUrl


async def test_one_internal_address_among_several_refuses_the_url() -> None:
    guard = Guard(stand_in_policy(), ScriptedResolver((str(STAND_IN), "10.0.0.7")))
    with pytest.raises(UnsafeUrl, match="internal address"):
        await guard.target("http://crm.mixed.test/hooks")


async def test_the_pinned_resolver_answers_only_the_checked_addresses_of_the_checked_name() -> None:
    resolver = ScriptedResolver(str(STAND_IN), "127.0.0.1")
    target = await Guard(stand_in_policy(), resolver).target("http://crm.rebind.test:8443/hooks")
    pinned = target.resolver()
    for _ in range(3):  # however often the HTTP client asks, the answer is the checked one
        (answer,) = await pinned.resolve("crm.rebind.test", 8443, family=socket.AF_UNSPEC)
        assert answer["host"] == str(STAND_IN) and answer["port"] == 8443
    assert resolver.lookups == ["crm.rebind.test"]
    with pytest.raises(OSError):  # another name (a redirect, a second host) resolves to nothing
        await pinned.resolve("metadata.internal", 80, family=socket.AF_UNSPEC)
    with pytest.raises(OSError):  # no checked IPv6 address: nothing in that family
        await pinned.resolve("crm.rebind.test", 8443, family=socket.AF_INET6)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    class Nowhere(ScriptedResolver):
        async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeUrl, match="does not resolve"):
        await Guard(STRICT, Nowhere()).target("https://nowhere.test/")


@pytest.mark.parametrize("url", ["https://2130706433/", "https://0x7f000001/", "https://127.1/",
                                 "https://0177.0.0.1/"])
async def test_legacy_numeric_forms_of_loopback_are_refused(url: str) -> None:
    """The system resolver maps these onto 127.0.0.1; the guard checks what they resolve to."""
    guard = Guard(STRICT)
    try:
        with pytest.raises(UnsafeUrl):
            await guard.target(url)
    finally:
        await guard.close()


async def test_development_resolves_and_pins_too_but_checks_no_address() -> None:
    resolver = ScriptedResolver("127.0.0.1", "10.9.9.9")
    target = await Guard(DEVELOPMENT, resolver).target("http://crm.dev.test:8080/")
    (answer,) = await target.resolver().resolve("crm.dev.test", 8080, family=socket.AF_UNSPEC)
    assert answer["host"] == "127.0.0.1"
    await Guard(DEVELOPMENT, resolver).vet("http://never.looked.up.test/")  # registration: the shape only
    assert resolver.lookups == ["crm.dev.test"]
