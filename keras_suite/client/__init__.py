"""Clients of a running model server: REST and gRPC (`clients`) and the load generator.
They import no TensorFlow model code and work against `ksuite serve` or tensorflow_model_server.
"""
