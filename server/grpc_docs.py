"""Transport: server reflection that carries the .proto comments (the API documentation).

grpcio-reflection answers from a ``DescriptorPool``, and a pool keeps no source
info (``FileDescriptor.CopyToProto`` leaves ``source_code_info`` out), so
``grpcurl describe`` would show the RPCs without a word of their documentation.
``make proto`` therefore also writes ``generated/hubbub/v1/messenger.binpb``: a
``FileDescriptorSet`` of ``messenger.proto`` with source info (``protoc
--include_source_info``). The servicer here answers reflection requests from the
default pool as usual (health, reflection, ``google/*``) and swaps in that file's
documented descriptor wherever it is sent. It also finds methods by their full
name (``hubbub.v1.MessengerService.SendMessage``), which the upb pool does not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc

# = grpc_reflection.v1alpha.reflection.aio.ReflectionServicer (its stubs lack `aio`)
from grpc_reflection.v1alpha._async import ReflectionServicer as AsyncReflectionServicer

from hubbub.v1 import messenger_pb2 as pb

log = logging.getLogger(__name__)

#: The descriptor set written by ``make proto`` next to the generated stubs.
DESCRIPTOR_SET = "messenger.binpb"


def _without_docs(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """``file`` as the Python generator embeds it: no source info and no ``json_name``."""
    bare = descriptor_pb2.FileDescriptorProto()
    bare.CopyFrom(file)
    bare.ClearField("source_code_info")
    messages = list(bare.message_type)
    while messages:
        message = messages.pop()
        for field in (*message.field, *message.extension):
            field.ClearField("json_name")
        messages.extend(message.nested_type)
    for field in bare.extension:
        field.ClearField("json_name")
    return bare


def documented_files(data: bytes | None = None) -> dict[str, bytes]:
    """Serialized ``FileDescriptorProto``s with source info (and no ``json_name``), by name.

    ``data`` is a serialized ``FileDescriptorSet`` (default: the packaged
    ``messenger.binpb``). A file that does not describe exactly what the compiled
    stubs serve (a stale set: run ``make proto``) is left out with a warning, so
    reflection never documents an API other than the one running. Returns ``{}``
    when the set is missing or unreadable.
    """
    if data is None:
        try:
            data = resources.files("hubbub.v1").joinpath(DESCRIPTOR_SET).read_bytes()
        except OSError as exc:
            log.warning("reflection without documentation: %s", exc)
            return {}
    try:
        files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    except Exception as exc:  # protobuf's DecodeError and friends
        log.warning("reflection without documentation: bad %s: %s", DESCRIPTOR_SET, exc)
        return {}
    compiled = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(compiled)
    documented: dict[str, bytes] = {}
    for file in files:
        served = _without_docs(file)
        if file.name == compiled.name and served != compiled:
            log.warning("reflection without documentation: %s is stale", DESCRIPTOR_SET)
            continue
        # Only the comments are added: with protoc's json_name values grpcurl would
        # print lowerCamelCase keys instead of the field names it prints without them.
        served.source_code_info.CopyFrom(file.source_code_info)
        documented[file.name] = served.SerializeToString()
    return documented


class DocumentedReflectionServicer(AsyncReflectionServicer):  # type: ignore[misc]
    """The grpc.aio reflection servicer (v1alpha) answering with documented descriptors.

    ``documented`` maps a .proto file name to its serialized ``FileDescriptorProto``
    with ``source_code_info``; any file not in it is served from the default pool.
    """

    def __init__(self, service_names: Iterable[str], documented: Mapping[str, bytes]) -> None:
        super().__init__(tuple(service_names))
        self._documented = dict(documented)

    def _document(self, response: Any) -> Any:
        if response.HasField("file_descriptor_response"):
            files = response.file_descriptor_response.file_descriptor_proto
            for index, raw in enumerate(files):
                name = descriptor_pb2.FileDescriptorProto.FromString(raw).name
                if name in self._documented:
                    files[index] = self._documented[name]
        return response

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        return self._document(super()._file_by_filename(request, filename))

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        response = super()._file_containing_symbol(request, fully_qualified_name)
        if response.HasField("error_response"):
            # The upb pool does not find methods (``Service.Method``), which is what
            # ``grpcurl describe pkg.Service.Method`` asks for: answer with the file of
            # the service that has that method.
            service, _, method = fully_qualified_name.rpartition(".")
            try:
                found = method in self._pool.FindServiceByName(service).methods_by_name
            except KeyError:
                found = False
            if found:
                response = super()._file_containing_symbol(request, service)
        return self._document(response)

    def _file_containing_extension(
        self, request: Any, containing_type: str, extension_number: int
    ) -> Any:
        return self._document(
            super()._file_containing_extension(request, containing_type, extension_number)
        )


def enable_documented_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection (``grpc.reflection.v1alpha``) for ``service_names`` on ``server``,
    with the .proto comments of ``messenger.proto`` when its descriptor set is current."""
    servicer = DocumentedReflectionServicer(service_names, documented_files())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
