"""Pick a tf.distribute strategy from a name, and say which one was picked.

auto        TF_CONFIG set -> multiworker; several GPUs -> mirrored; else default
default     tf.distribute.get_strategy() (one device)
mirrored    MirroredStrategy over the GPUs, or over N logical CPU devices when
            --cpu-devices N is given on a CPU-only machine (for testing)
multiworker MultiWorkerMirroredStrategy; reads TF_CONFIG
tpu         TPUStrategy through TPUClusterResolver (TPU_NAME or --tpu)
"""

from __future__ import annotations

import json
import os

from keras_suite import common
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def split_cpu(n: int) -> None:
    """Expose N logical CPU devices; must run before TensorFlow initialises its runtime."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != n:
            raise UserError(
                f"cannot split the CPU into {n} devices: TensorFlow already started with "
                f"{existing}; pass --cpu-devices in a fresh process"
            ) from None


def make_strategy(name: str = "auto", cpu_devices: int = 0, tpu: str = ""):
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1 or cpu_devices > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        if cpu_devices > 1:
            split_cpu(cpu_devices)
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            # Plain reduction: NCCL needs GPUs.
            return tf.distribute.MirroredStrategy(
                devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
            )
        return tf.distribute.MirroredStrategy(["/cpu:0"])
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise UserError(
                "--strategy multiworker needs TF_CONFIG (cluster and task); "
                "see docs/distributed.md for an example"
            )
        try:
            json.loads(raw)
        except json.JSONDecodeError:
            raise UserError("TF_CONFIG is not valid JSON; see docs/distributed.md") from None
        if cpu_devices > 1:
            split_cpu(cpu_devices)
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    # tpu
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise UserError(
            f"--strategy tpu: no TPU reachable ({str(exc).splitlines()[0]}); "
            "set TPU_NAME or run on a TPU VM"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def describe(strategy) -> str:
    kind = type(strategy).__name__
    # TF's class names are not the public ones.
    kind = {
        "_DefaultDistributionStrategy": "default",
        "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
    }.get(kind, kind)
    return f"{kind} with {strategy.num_replicas_in_sync} replica(s)"


def worker_info(strategy) -> tuple[str, int, bool]:
    """(task_type, task_id, is_chief) — chief writes the run directory, others don't."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return "chief", 0, True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )
    return task_type, task_id, is_chief
