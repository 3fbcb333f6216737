"""Many nodes, shown on one machine: two `accelerate launch` invocations as machine rank 0 and 1 (gloo, CPU).

Each node runs one process; they meet at a TCP rendezvous on 127.0.0.1, as two cluster nodes meet at the main
node's address. The run must equal one process with the same global batch (the tolerance of the two-process
test in test_engine.py: the same sums in another order).
"""

import os
import socket
import subprocess
import sys

from helpers import assert_same_training, write_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_train_like_one_process(tiny_benchmark, tmp_path):
    common = {"optim.epochs": 2, "checkpoint.every_steps": 0}
    one = write_config(tmp_path, tiny_benchmark, "one", **common)
    two = write_config(tmp_path, tiny_benchmark, "nodes", **common, **{"optim.batch_size": 4, "eval.batch_size": 16})
    single = subprocess.run([sys.executable, "-m", "albar", "train", "--config", str(one), "--no-progress"],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
             "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
             "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no",
             "-m", "albar", "train", "--config", str(two), "--no-progress"],
            env={**ENV, "ACCELERATE_USE_CPU": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for rank, (node, (_, err)) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"machine rank {rank}: {err[-3000:]}"
    assert_same_training(tmp_path / "one", tmp_path / "nodes", tiny_benchmark)
