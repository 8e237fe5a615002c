"""Two in-process nodes sharing one PostgreSQL database and one Redis
(docs/architecture.md §Many nodes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
import redis.asyncio as aioredis

from hubbub.server.app import start_server
from hubbub.server.broker_redis import RedisBroker
from hubbub.server.config import ServerConfig
from hubbub.server.models import EntryKind, utc_now
from hubbub.server.presence_redis import RedisPresence
from hubbub.server.store_postgres import PostgresStore
from hubbub.v1 import messenger_pb2 as pb

from ..backends import postgres_server, postgres_url, redis_server, redis_url
from .conftest import PASSWORD, Chat, Node, auth, open_chat, register_login

__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]  # fixtures by name

pytestmark = pytest.mark.timeout(60)

NodeFactory = Callable[..., Awaitable[Node]]
TTL_S = 1.0  # presence TTL of the nodes under test


@pytest.fixture
async def nodes(node_factory: NodeFactory, postgres_url: str, redis_url: str) -> tuple[Node, Node]:
    """Nodes A and B on the same PostgreSQL database and Redis."""
    shared = {"postgres_url": postgres_url, "redis_url": redis_url, "presence_ttl_s": TTL_S}
    return await node_factory(**shared), await node_factory(**shared)


async def online_names(node: Node, token: str) -> list[str]:
    """Usernames ListUsers(online_only) returns on ``node``."""
    reply = await node.stub.ListUsers(pb.ListUsersRequest(online_only=True), metadata=auth(token))
    return [u.username for u in reply.users]


async def no_more_messages(chat: Chat, wait_s: float = 0.5) -> bool:
    """True if no message event arrives on ``chat`` within ``wait_s``."""
    try:
        await chat.next("message", wait_s)
    except TimeoutError:
        return True
    return False


async def test_nodes_use_postgres_and_redis_without_the_sqlite_lock(
    nodes: tuple[Node, Node],
) -> None:
    """Both nodes run on PostgresStore, RedisBroker and RedisPresence, with no SQLite lock."""
    for node in nodes:
        assert isinstance(node.server.store, PostgresStore)
        assert isinstance(node.server.hub.broker, RedisBroker)
        assert isinstance(node.server.hub.presence, RedisPresence)
        assert node.server.db_lock is None


async def test_users_on_different_nodes_chat_both_ways(nodes: tuple[Node, Node]) -> None:
    """alice on node A and bob on node B exchange messages in both directions, in order."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice", "Alice A.")
    bob = await register_login(node_b, "bob")
    a = await open_chat(node_a, alice)
    b = await open_chat(node_b, bob)
    await b.next("synced")
    for i in range(5):
        await a.send("bob", f"hi bob {i}", f"a{i}")
    # Stored in send order (sequences 1..5); the SendResults of sends committed together
    # may be written in any order (docs/protocol.md promises the storage order), so they
    # are matched by client id, as clients do.
    answers = [(await a.next("send_result")).send_result for _ in range(5)]
    by_client_id = {r.client_id: r for r in answers}
    results = [by_client_id[f"a{i}"] for i in range(5)]
    assert [r.sequence for r in results] == [1, 2, 3, 4, 5]
    assert all(r.recipient_online for r in results)  # bob is online, on the other node
    msgs = await b.messages(5)
    assert [(m.sender, m.body, m.sequence) for m in msgs] == [
        ("alice", f"hi bob {i}", i + 1) for i in range(5)
    ]
    assert msgs[0].sender_display_name == "Alice A."
    assert msgs[0].message_id == results[0].message_id
    await b.send("alice", "hello alice", "b1")
    (back,) = await a.messages(1)
    assert (back.sender, back.body, back.sequence) == ("bob", "hello alice", 1)
    await a.close()
    await b.close()


async def test_presence_crosses_nodes(nodes: tuple[Node, Node]) -> None:
    """Online/offline events and the online list cover users of the other node."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice")
    bob = await register_login(node_b, "bob")
    a = await open_chat(node_a, alice)
    b = await open_chat(node_b, bob)
    welcome = b.seen[0].welcome
    assert [u.username for u in welcome.online_users] == ["alice", "bob", "echobot"]
    online = (await a.next("presence_change")).presence_change.user
    assert (online.username, online.presence) == ("bob", pb.PRESENCE_ONLINE)
    assert await online_names(node_a, alice) == ["alice", "bob", "echobot"]
    await b.close()
    offline = (await a.next("presence_change")).presence_change.user
    assert (offline.username, offline.presence) == ("bob", pb.PRESENCE_OFFLINE)
    assert await online_names(node_b, bob) == ["alice", "echobot"]
    await a.close()


async def test_second_stream_on_the_other_node_is_refused(nodes: tuple[Node, Node]) -> None:
    """One live stream per user across the deployment: a second one on node B is refused."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice")
    a = await open_chat(node_a, alice)
    await a.next("synced")
    call = node_b.stub.Chat(None, metadata=auth(alice))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await a.close()
    deadline = time.monotonic() + 5
    while True:  # once the first stream has ended, node B accepts alice
        try:
            again = await open_chat(node_b, alice)
            break
        except (grpc.aio.AioRpcError, AssertionError):
            assert time.monotonic() < deadline, "alice was never released"
            await asyncio.sleep(0.1)
    await again.close()


async def test_message_to_offline_user_is_delivered_when_he_connects_elsewhere(
    nodes: tuple[Node, Node],
) -> None:
    """A message sent on node A to offline bob is replayed when bob connects to node B."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice")
    bob = await register_login(node_a, "bob")
    a = await open_chat(node_a, alice)
    for i in range(3):
        await a.send("bob", f"stored {i}", f"s{i}")
        assert not (await a.next("send_result")).send_result.recipient_online
    b = await open_chat(node_b, bob)
    msgs = await b.messages(3)
    assert [(m.body, m.sequence) for m in msgs] == [(f"stored {i}", i + 1) for i in range(3)]
    assert (await b.next("synced")).synced.last_sequence == 3
    await a.close()
    await b.close()


async def test_echobot_answers_exactly_once_across_nodes(nodes: tuple[Node, Node]) -> None:
    """echobot answers each message once in all (one echo stored, no duplicate work)."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice")
    bob = await register_login(node_b, "bob")
    a = await open_chat(node_a, alice)
    b = await open_chat(node_b, bob)
    await a.send("echobot", "ping from A", "e1")
    await b.send("echobot", "ping from B", "e2")
    (echo_a,) = await a.messages(1)
    (echo_b,) = await b.messages(1)
    assert (echo_a.sender, echo_a.body) == ("echobot", "ping from A")
    assert (echo_b.sender, echo_b.body) == ("echobot", "ping from B")
    assert await no_more_messages(a) and await no_more_messages(b)
    for node in nodes:
        assert node.server.hub.metrics.sends_duplicate._value.get() == 0
    store = node_a.server.store
    echobot = await store.get_account("echobot")
    assert echobot is not None
    cursor = await store.cursor(echobot)
    assert (cursor.last_sequence, cursor.acked_sequence) == (2, 2)
    for name, body in (("alice", "ping from A"), ("bob", "ping from B")):
        account = await store.get_account(name)
        assert account is not None
        texts = [m for m in await store.messages_after(account, 0, 20) if m.sender == "echobot"]
        assert [m.body for m in texts if m.kind is EntryKind.TEXT] == [body]
    await a.close()
    await b.close()


async def test_crashed_node_users_go_offline_after_the_ttl(nodes: tuple[Node, Node]) -> None:
    """When node A stops heart-beating (a crash), its users go offline on B after the TTL,
    and B's users are told with one presence event."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice")
    bob = await register_login(node_b, "bob")
    a = await open_chat(node_a, alice)
    await a.next("synced")
    b = await open_chat(node_b, bob)
    await b.next("synced")
    assert await online_names(node_b, bob) == ["alice", "bob", "echobot"]
    await asyncio.sleep(TTL_S * 1.5)  # the heartbeat keeps the claim past the TTL
    assert await online_names(node_b, bob) == ["alice", "bob", "echobot"]
    presence = node_a.server.hub.presence
    assert isinstance(presence, RedisPresence) and presence._heartbeat_task is not None
    presence._heartbeat_task.cancel()  # node A "crashes": no more heartbeats, no cleanup
    started = time.monotonic()
    while "alice" in await online_names(node_b, bob):
        assert time.monotonic() - started < TTL_S + 3, "alice stayed online"
        await asyncio.sleep(0.1)
    assert time.monotonic() - started >= TTL_S * 0.5
    gone = (await b.next("presence_change", wait_s=TTL_S + 5)).presence_change.user
    assert (gone.username, gone.presence) == ("alice", pb.PRESENCE_OFFLINE)
    a2 = await open_chat(node_b, alice)  # alice may now connect to node B
    await a2.next("synced")
    assert await online_names(node_b, bob) == ["alice", "bob", "echobot"]
    back = (await b.next("presence_change")).presence_change.user
    assert (back.username, back.presence) == ("alice", pb.PRESENCE_ONLINE)
    await a2.close()
    await a.close()
    await b.close()


async def test_broker_resubscribes_after_losing_redis(
    nodes: tuple[Node, Node], redis_url: str
) -> None:
    """Killing the nodes' Redis subscriber connections: they reconnect and traffic flows again."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice")
    bob = await register_login(node_b, "bob")
    a = await open_chat(node_a, alice)
    b = await open_chat(node_b, bob)
    await b.next("synced")
    client = aioredis.from_url(redis_url)
    try:
        killed = await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        assert killed >= 2
    finally:
        await client.aclose()
    broker_b = node_b.server.hub.broker
    assert isinstance(broker_b, RedisBroker)
    deadline = time.monotonic() + 10
    while broker_b.reconnects == 0:
        assert time.monotonic() < deadline, "node B never resubscribed"
        await asyncio.sleep(0.05)
    await a.send("bob", "after the outage", "x1")
    (msg,) = await b.messages(1)
    assert msg.body == "after the outage"
    await a.close()
    await b.close()


async def test_redis_without_postgres_is_refused(redis_url: str) -> None:
    """--redis-url without --postgres-url is refused with a clear error."""
    with pytest.raises(RuntimeError, match="--redis-url needs --postgres-url"):
        await start_server(ServerConfig(port=0, redis_url=redis_url))


async def test_presence_claims_are_atomic_and_released_only_by_their_holder(
    redis_url: str,
) -> None:
    """One claim per user across nodes; only the holder releases it; the holder's id takes
    it over; a dead node's claims are offline, taken at once and swept exactly once."""
    from hubbub.server.presence import Claim  # here: the module imports on older servers too

    a = RedisPresence(redis_url, ttl_s=0.5)
    b = RedisPresence(redis_url, ttl_s=30)
    await a.start()
    await b.start()
    try:
        t0 = utc_now()
        assert (await a.claim("alice", t0, "h1")).granted
        assert not (await b.claim("alice", t0, "h2")).granted  # held by a live node
        assert not (await b.claim("alice", t0, "h2", takeover="wrong")).granted
        assert not await b.release("alice", t0, "h2")  # b does not hold alice
        assert set(await a.online()) == {"alice"} == set(await b.online())
        t1 = utc_now()
        taken = await b.claim("alice", t1, "h2", takeover="h1")
        assert taken == Claim(True, replaced="h1", replaced_local=False)
        assert not await a.release("alice", t1, "h1")  # taken over: b's claim stays
        assert await a.online() == {"alice": t1}
        assert (await a.claim("carol", t1, "h3")).granted
        assert (await a.claim("dave", t1, "h4")).granted
        assert a._heartbeat_task is not None
        a._heartbeat_task.cancel()  # node a dies: its key expires after 0.5 s
        await asyncio.sleep(0.8)
        assert set(await b.online()) == {"alice"}
        assert not await b.is_online("carol") and await b.is_online("alice")
        again = await b.claim("dave", utc_now(), "h5")  # a dead node's claim is free at once
        assert again == Claim(True, replaced="h4", replaced_local=False)
        swept = [name for name, _ in await b.sweep()]
        assert swept == ["carol"]  # reported once, to one caller
        assert await b.sweep() == []
        assert "carol" in await b.last_change()
        assert await b.release("alice", utc_now(), "h2")
        assert set(await b.online()) == {"dave"}
    finally:
        await a.close()
        await b.close()


async def test_a_stream_on_node_b_takes_over_alices_stream_on_node_a(
    nodes: tuple[Node, Node],
) -> None:
    """With the resume token of alice's stream on node A, a Chat on node B is welcomed at
    once and the stream on A ends ABORTED (SESSION_TAKEN_OVER), published through Redis."""
    node_a, node_b = nodes
    alice = await register_login(node_a, "alice")
    old = await open_chat(node_a, alice)
    await old.next("synced")
    resume_token = old.seen[0].welcome.resume_token
    started = time.monotonic()
    call = node_b.stub.Chat(None, metadata=(*auth(alice), ("hubbub-resume-token", resume_token)))
    new = Chat(call)
    await new.next("welcome")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.next(wait_s=2)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert time.monotonic() - started < 1.0
    assert "alice" not in node_a.server.hub.sessions and "alice" in node_b.server.hub.sessions
    await new.close()


@pytest.fixture
async def default_nodes(
    node_factory: NodeFactory, postgres_url: str, redis_url: str
) -> tuple[Node, Node]:
    """Nodes A and B with the default presence TTL (as an operator runs them)."""
    shared = {"postgres_url": postgres_url, "redis_url": redis_url}
    return await node_factory(**shared), await node_factory(**shared)


def kill_heartbeat(node: Node) -> None:
    """Node ``node`` "dies" for the cluster: its presence heartbeat stops (no cleanup)."""
    presence = node.server.hub.presence
    assert isinstance(presence, RedisPresence) and presence._heartbeat_task is not None
    presence._heartbeat_task.cancel()


async def test_a_dead_nodes_users_show_offline_within_10_s(
    default_nodes: tuple[Node, Node],
) -> None:
    """With the default --presence-ttl, alice (on node A, which dies) shows offline on node B
    within 10 s, and bob on node B is told with a presence event."""
    node_a, node_b = default_nodes
    alice = await register_login(node_a, "alice")
    bob = await register_login(node_b, "bob")
    a = await open_chat(node_a, alice)
    await a.next("synced")
    b = await open_chat(node_b, bob)
    await b.next("synced")
    kill_heartbeat(node_a)
    started = time.monotonic()
    while "alice" in await online_names(node_b, bob):
        assert time.monotonic() - started < 10, "alice stayed online"
        await asyncio.sleep(0.1)
    gone = (await b.next("presence_change", wait_s=10)).presence_change.user
    took = time.monotonic() - started
    assert (gone.username, gone.presence) == ("alice", pb.PRESENCE_OFFLINE)
    assert took < 10
    print(f"a dead node's user was announced offline after {took:.1f} s")
    await a.close()
    await b.close()


async def test_the_resume_token_takes_over_on_another_node_when_a_node_dies(
    default_nodes: tuple[Node, Node],
) -> None:
    """Node A dies: at once (long before its TTL) alice's client reconnects to node B with
    its resume token and is welcomed; another login of alice without it is refused."""
    node_a, node_b = default_nodes
    alice = await register_login(node_a, "alice")
    other_login = (
        await register_login(node_b, "carol")
        and (await node_b.stub.Login(pb.LoginRequest(username="alice", password=PASSWORD))).token
    )
    a = await open_chat(node_a, alice)
    await a.next("synced")
    resume_token = a.seen[0].welcome.resume_token
    kill_heartbeat(node_a)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await Chat(node_b.stub.Chat(None, metadata=auth(other_login))).next()
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    call = node_b.stub.Chat(None, metadata=(*auth(alice), ("hubbub-resume-token", resume_token)))
    new = Chat(call)
    await new.next("welcome")
    took = time.monotonic() - started
    assert took < 1.0, f"takeover took {took:.2f} s"
    print(f"takeover on another node after a node died: {took * 1000:.0f} ms")
    await new.write(pb.ChatRequest(resume=pb.Resume()))
    await new.next("synced")
    await new.close()
    await a.close()


async def test_nodes_starting_together_migrate_the_schema_once(postgres_url: str) -> None:
    """Stores opening at once on an empty database create the schema once; newer is refused."""
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        versions = await stores[0].pool.fetch("SELECT version FROM schema_version")
        assert [v[0] for v in versions] == [2, 3]  # v2 schema, then the v3 migration
        await stores[0].pool.execute("INSERT INTO schema_version (version) VALUES (99)")
    finally:
        for s in stores:
            await s.close()
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        await PostgresStore(postgres_url).open()
