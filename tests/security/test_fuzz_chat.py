"""Fuzzing the Chat stream (issue 8, "What it must show"): random ChatRequest fields and raw
frames get an Error event or a non-OK status, never a crash or a hang, and another user's
stream keeps working after every example."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.server import usernames
from hubbub.server.errors import HubbubError
from hubbub.v1 import messenger_pb2 as pb

from ..integration.conftest import Chat, Node, auth, open_chat, register_login

pytestmark = pytest.mark.timeout(180)
CHAT = "/hubbub.v1.MessengerService/Chat"
USERS = {"probe", "fuzz", "echobot"}
LIMIT = 65536  # the default --max-message-bytes


def identity(raw: bytes) -> bytes:
    """Serializer that sends bytes exactly as given."""
    return raw


uint64 = st.integers(min_value=0, max_value=2**64 - 1)
names = st.one_of(
    st.sampled_from(["probe", "PROBE", "ｐｒｏｂｅ", "nobody-here", "", "#crew", "a" * 300]),
    st.text(max_size=40),
)
bodies = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "x" * (LIMIT + 1), "é" * (LIMIT // 2 + 1), "\u202e\u2028\x00\x1b[2J"]),
)
client_ids = st.one_of(st.text(max_size=140), st.sampled_from(["", "~x", "a" * 129, "c1", "c2"]))


@st.composite
def sends(draw: st.DrawFn) -> pb.ChatRequest:
    """A send event with random destination (or none), client id and body."""
    send = pb.SendMessage(client_id=draw(client_ids), body=draw(bodies))
    match draw(st.sampled_from(["recipient", "group", "random", "none"])):
        case "recipient":
            send.recipient = draw(names)
        case "group":
            send.group = draw(names)
        case "random":
            send.random_recipient = draw(st.booleans())
    return pb.ChatRequest(send=send)


requests = st.one_of(
    sends(),
    st.builds(lambda s: pb.ChatRequest(ack=pb.Ack(sequence=s)), uint64),
    st.builds(lambda n: pb.ChatRequest(ping=pb.Ping(nonce=n)), uint64),
    st.builds(lambda s: pb.ChatRequest(resume=pb.Resume(after_sequence=s)), uint64),
    st.just(pb.ChatRequest(resume=pb.Resume())),
    st.just(pb.ChatRequest()),
)
frames = st.lists(
    st.one_of(requests.map(lambda r: r.SerializeToString()), st.binary(max_size=48)),
    min_size=1,
    max_size=6,
)


def must_fail(request: pb.ChatRequest) -> bool:
    """True for events the server must refuse with an Error event (no groups exist and the
    fuzzed user's inbox stays empty, so this oracle is exact for these cases)."""
    kind = request.WhichOneof("event")
    if kind is None:
        return True
    if kind != "send":
        return False
    send = request.send
    destination = send.WhichOneof("destination")
    size = len(send.body.encode())
    if destination is None or destination == "group":
        return True
    if not 1 <= len(send.client_id) <= 128 or send.client_id.startswith("~"):
        return True
    if size == 0 or size > LIMIT:
        return True
    if destination == "recipient":
        try:
            return usernames.canonical(send.recipient) not in USERS
        except HubbubError:
            return True
    return False


@dataclass
class Fixture:
    """The server, the fuzzed user's token and the probe user's open stream."""

    node: Node
    token: str
    probe: Chat


@pytest.fixture
async def target(node: Node) -> Any:
    """A server with users fuzz and probe; probe keeps a Chat stream open throughout."""
    token = await register_login(node, "fuzz")
    probe_token = await register_login(node, "probe")
    probe = await open_chat(node, probe_token)
    await probe.next("synced")
    yield Fixture(node, token, probe)
    await probe.close()


async def probe_still_served(fixture: Fixture, nonce: int) -> None:
    """The probe user's ping is answered and its send is stored."""
    await fixture.probe.write(pb.ChatRequest(ping=pb.Ping(nonce=nonce)))
    pong = await fixture.probe.next("pong", wait_s=10.0)
    assert pong.pong.nonce == nonce
    await fixture.probe.send("echobot", f"still here {nonce}", f"probe-{nonce}")
    result = await fixture.probe.next("send_result", wait_s=10.0)
    assert result.send_result.client_id == f"probe-{nonce}"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
)
@given(raw_frames=frames)
async def test_fuzzed_chat_frames_are_answered_and_others_keep_being_served(
    target: Fixture, raw_frames: list[bytes]
) -> None:
    """Every bad event gets an Error event naming it, an undecodable frame ends the call with
    INVALID_ARGUMENT, every call ends within 15 s, and the probe user keeps being served."""
    node = target.node
    call: Any = node.channel.stream_stream(
        CHAT, request_serializer=identity, response_deserializer=pb.ChatResponse.FromString
    )(None, metadata=auth(target.token))
    decoded: list[pb.ChatRequest] = []
    undecodable = False
    try:
        welcome = await asyncio.wait_for(call.read(), 10.0)
        assert welcome.WhichOneof("event") == "welcome"
        for raw in raw_frames:
            try:
                request = pb.ChatRequest.FromString(raw)
            except Exception:
                undecodable = True
            else:
                decoded.append(request)
            await call.write(raw)
            if undecodable:
                break
        with contextlib.suppress(Exception):  # the server may have ended the call already
            await call.done_writing()
        events: list[pb.ChatResponse] = []
        async with asyncio.timeout(15.0):
            with contextlib.suppress(grpc.aio.AioRpcError):  # a non-OK end, checked below
                while isinstance(event := await call.read(), pb.ChatResponse):  # until EOF
                    events.append(event)
        code = await call.code()
    except BaseException:
        call.cancel()
        raise
    if undecodable:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, await call.details()
        assert "could not be decoded" in (await call.details() or "")
        # The bad frame may end the call before the server reached the earlier events.
        return await probe_still_served(target, len(raw_frames))
    assert code == grpc.StatusCode.OK, await call.details()
    errors = {e.error.request_index: e.error for e in events if e.WhichOneof("event") == "error"}
    results = [e.send_result.client_id for e in events if e.WhichOneof("event") == "send_result"]
    pongs = [e.pong.nonce for e in events if e.WhichOneof("event") == "pong"]
    for index, request in enumerate(decoded, start=1):
        kind = request.WhichOneof("event")
        if must_fail(request):
            assert index in errors, (index, request, events)
            assert errors[index].message and errors[index].reason, errors[index]
        elif kind == "ping":
            assert request.ping.nonce in pongs
        elif kind == "send":  # a valid send: stored (maybe a duplicate) or refused, once
            answered = results.count(request.send.client_id) + sum(
                1 for e in errors.values() if e.request_index == index
            )
            assert answered >= 1, (index, request, events)
    assert set(errors) <= set(range(1, len(decoded) + 1))
    await probe_still_served(target, len(raw_frames))
