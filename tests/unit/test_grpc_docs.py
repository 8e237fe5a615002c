"""The descriptor set that reflection serves with the .proto comments (server/grpc_docs.py)."""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from hubbub.server.grpc_docs import documented_files

MESSENGER = "hubbub/v1/messenger.proto"


def _comments(raw: bytes) -> list[str]:
    file = descriptor_pb2.FileDescriptorProto.FromString(raw)
    return [loc.leading_comments for loc in file.source_code_info.location]


def test_packaged_set_documents_the_compiled_contract() -> None:
    """The committed messenger.binpb matches the compiled stubs and carries the comments."""
    files = documented_files()
    assert set(files) == {MESSENGER}
    assert any("SendMessage stores one message durably" in c for c in _comments(files[MESSENGER]))


def test_stale_set_is_not_served() -> None:
    """A descriptor set that differs from the compiled contract is left out (no wrong docs)."""
    current = descriptor_pb2.FileDescriptorSet(
        file=[descriptor_pb2.FileDescriptorProto.FromString(documented_files()[MESSENGER])]
    )
    stale = descriptor_pb2.FileDescriptorSet()
    stale.CopyFrom(current)
    stale.file[0].message_type[0].field.add(name="added_later", number=99, type=9)
    assert documented_files(stale.SerializeToString()) == {}
    assert set(documented_files(current.SerializeToString())) == {MESSENGER}


def test_unreadable_set_is_not_served() -> None:
    """Bytes that are not a FileDescriptorSet give no documentation rather than an error."""
    assert documented_files(b"\xff\xff not a descriptor set") == {}
