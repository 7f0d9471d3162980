"""TF Serving config messages that the tensorflow-serving-api wheel does not ship.

`batching_parameters.txt` is a text-format `tensorflow.serving.BatchingParameters`
(session_bundle_config.proto) and `monitoring.config` a text-format
`tensorflow.serving.MonitoringConfig` (monitoring_config.proto). The wheel has neither,
so the two messages are declared here with the same names, field names and types, in a
private descriptor pool, which lets protobuf's own text_format parse and print them:
unknown fields and wrong types are rejected exactly as tensorflow_model_server would.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, type_, type_name=None, repeated=False):
    field = msg.field.add(
        name=name,
        number=number,
        type=type_,
        label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
    )
    if type_name:
        field.type_name = type_name


@functools.lru_cache(maxsize=1)
def _classes():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="ksuite/tf_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    batching = file.message_type.add(name="BatchingParameters")
    int64 = ".google.protobuf.Int64Value"
    _field(batching, "max_batch_size", 1, _F.TYPE_MESSAGE, int64)
    _field(batching, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64)
    _field(batching, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64)
    _field(batching, "num_batch_threads", 4, _F.TYPE_MESSAGE, int64)
    _field(batching, "thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    _field(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    _field(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    _field(
        batching, "enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, ".google.protobuf.BoolValue"
    )
    _field(batching, "max_execution_batch_size", 9, _F.TYPE_MESSAGE, int64)

    prometheus = file.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _F.TYPE_BOOL)
    _field(prometheus, "path", 2, _F.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    _field(
        monitoring, "prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig"
    )

    pool.Add(file)
    get = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))  # noqa: E731
    return get("tensorflow.serving.BatchingParameters"), get("tensorflow.serving.MonitoringConfig")


def BatchingParameters(**kwargs):  # noqa: N802 - mirrors the proto message name
    return _classes()[0](**kwargs)


def MonitoringConfig(**kwargs):  # noqa: N802
    return _classes()[1](**kwargs)
