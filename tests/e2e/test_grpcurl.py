"""End-to-end: the real grpcurl binary drives a hubbub-server subprocess through reflection."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..harness.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
SERVICE = "hubbub.v1.MessengerService"


def grpcurl(
    server: ServerProcess,
    *args: str,
    token: str | None = None,
    data: str | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `grpcurl -plaintext [-H auth] [-d data] ADDRESS *args` against ``server``."""
    cmd = [GRPCURL, "-plaintext", "-max-time", "20"]
    if token is not None:
        cmd += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        cmd += ["-d", data]
    cmd += [server.address, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)


def login(server: ServerProcess, username: str) -> str:
    """Register and log in ``username`` with grpcurl; returns the token."""
    creds = json.dumps({"username": username, "password": "correct horse battery"})
    reg = grpcurl(server, f"{SERVICE}/Register", data=creds)
    assert reg.returncode == 0, reg.stderr
    out = grpcurl(server, f"{SERVICE}/Login", data=creds)
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["token"])


def test_reflection_lists_services(server_process: ServerProcess) -> None:
    """`grpcurl list` shows the Hubbub service, health and reflection with no proto files."""
    out = grpcurl(server_process, "list")
    assert out.returncode == 0, out.stderr
    services = out.stdout.split()
    assert SERVICE in services and "grpc.health.v1.Health" in services
    described = grpcurl(server_process, "describe", SERVICE)
    assert (
        "rpc Chat ( stream .hubbub.v1.ChatRequest ) returns ( stream .hubbub.v1.ChatResponse )"
        in (described.stdout)
    )


def test_register_login_list_users(server_process: ServerProcess) -> None:
    """Register, Login and ListUsers (with the bearer token) work from grpcurl."""
    token = login(server_process, "alice")
    out = grpcurl(server_process, f"{SERVICE}/ListUsers", token=token, data="{}")
    assert out.returncode == 0, out.stderr
    names = [u["username"] for u in json.loads(out.stdout)["users"]]
    assert names == ["alice", "echobot"]


def test_errors_are_standard_status_codes(server_process: ServerProcess) -> None:
    """A bad username is InvalidArgument with BadRequest details; no token is Unauthenticated."""
    bad = grpcurl(
        server_process,
        f"{SERVICE}/Register",
        data='{"username": "bad!name", "password": "correct horse battery"}',
    )
    assert bad.returncode != 0
    assert "Code: InvalidArgument" in bad.stderr and "google.rpc.BadRequest" in bad.stderr
    anon = grpcurl(server_process, f"{SERVICE}/ListUsers", data="{}")
    assert "Code: Unauthenticated" in anon.stderr


def test_chat_from_a_json_file_terminates_by_itself(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    """`grpcurl -d @ … Chat < events.json` gets every answer and ends with OK."""
    alice = login(server_process, "alice")
    login(server_process, "bob")
    events = [
        {"resume": {}},
        {"send": {"client_id": "m1", "recipient": "bob", "body": "hi bob"}},
        {"send": {"client_id": "m2", "recipient": "echobot", "body": "echo me"}},
        {"send": {"client_id": "m3", "recipient": "nobody", "body": "hello?"}},
    ]
    out = grpcurl(
        server_process,
        f"{SERVICE}/Chat",
        token=alice,
        data="@",
        stdin="\n".join(json.dumps(e) for e in events),
    )
    assert out.returncode == 0, out.stderr
    replies = [json.loads(chunk) for chunk in _json_objects(out.stdout)]
    kinds = [next(iter(r)) for r in replies]
    assert kinds[0] == "welcome"
    assert kinds.count("send_result") == 2
    error = next(r["error"] for r in replies if "error" in r)
    assert error["message"] == "The destination user does not exist"
    echo = next(r["message"] for r in replies if "message" in r)
    assert (echo["sender"], echo["body"]) == ("echobot", "echo me")


def test_messages_for_offline_user_survive_restart(server_process: ServerProcess) -> None:
    """A message stored for an offline user is delivered after a kill -9 and restart."""
    alice = login(server_process, "alice")
    bob = login(server_process, "bob")
    send = json.dumps({"send": {"client_id": "k1", "recipient": "bob", "body": "kept"}})
    out = grpcurl(
        server_process,
        f"{SERVICE}/Chat",
        token=alice,
        data="@",
        stdin=send,
    )
    assert '"sendResult"' in out.stdout or '"send_result"' in out.stdout, out.stdout
    server_process.stop(signal.SIGKILL)
    server_process.start()
    out = grpcurl(
        server_process,
        f"{SERVICE}/Chat",
        token=bob,
        data="@",
        stdin='{"resume": {}}',
    )
    assert out.returncode == 0, out.stderr
    bodies = [
        r["message"]["body"] for r in map(json.loads, _json_objects(out.stdout)) if "message" in r
    ]
    assert bodies == ["kept"]


def _json_objects(text: str) -> list[str]:
    """Split grpcurl's concatenated pretty-printed JSON objects."""
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while index < len(text):
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            break
        obj, end = decoder.raw_decode(text, index)
        objects.append(json.dumps(obj))
        index = end
    return objects


def test_send_message_while_a_chat_is_open(server_process: ServerProcess) -> None:
    """Unary SendMessage from grpcurl works while the sender's own Chat stream is open; a
    resend is a duplicate and a client id reused for another message is FailedPrecondition."""
    alice = login(server_process, "alice")
    bob = login(server_process, "bob")
    header = f"authorization: Bearer {alice}"
    address = server_process.address
    chat = subprocess.Popen(  # alice's interactive stream, held open on stdin
        [
            GRPCURL,
            "-plaintext",
            "-max-time",
            "30",
            "-H",
            header,
            "-d",
            "@",
            address,
            f"{SERVICE}/Chat",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert chat.stdin is not None
        assert chat.stdout is not None
        welcome = "".join(iter(chat.stdout.readline, "}\n")) + "}"  # the stream is open
        assert "welcome" in json.loads(welcome)
        chat.stdin.write('{"resume": {}}\n')
        chat.stdin.flush()
        send = json.dumps({"client_id": "cron-1", "recipient": "bob", "body": "nightly report"})
        out = grpcurl(server_process, f"{SERVICE}/SendMessage", token=alice, data=send)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)["result"]
        assert (result["recipient"], result.get("duplicate", False)) == ("bob", False)
        again = grpcurl(server_process, f"{SERVICE}/SendMessage", token=alice, data=send)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["result"]["duplicate"] is True
        reused = json.dumps({"client_id": "cron-1", "recipient": "bob", "body": "other"})
        refused = grpcurl(server_process, f"{SERVICE}/SendMessage", token=alice, data=reused)
        assert refused.returncode != 0
        assert "Code: FailedPrecondition" in refused.stderr and "CLIENT_ID_REUSED" in refused.stderr
        assert chat.poll() is None  # the stream was not disturbed
    finally:
        if chat.stdin is not None:
            chat.stdin.close()
        chat.wait(30)
    assert chat.returncode == 0, chat.stderr.read() if chat.stderr else ""
    out = grpcurl(server_process, f"{SERVICE}/Chat", token=bob, data="@", stdin='{"resume": {}}')
    bodies = [
        r["message"]["body"] for r in map(json.loads, _json_objects(out.stdout)) if "message" in r
    ]
    assert bodies == ["nightly report"]
