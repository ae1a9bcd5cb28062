import { type DescMessage, type DescService, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type ServiceDefinition, makeGenericClientConstructor } from "@grpc/grpc-js";

/**
 * A @grpc/grpc-js service definition built from a descriptor that
 * protoc-gen-es generated, so grpc-js clients use the same generated types as
 * the Connect side (no second code generator, no proto-loader at run time).
 */
export function grpcServiceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, ServiceDefinition[string]> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition;
}

/** A grpc-js client class for a generated service. */
export function grpcClientConstructor(service: DescService) {
  return makeGenericClientConstructor(grpcServiceDefinition(service), service.name);
}

function serializer<D extends DescMessage>(schema: D) {
  return (message: MessageShape<D>) => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D) {
  return (bytes: Buffer) => fromBinary(schema, bytes);
}
