"""`accelerate launch --num_processes 2 --cpu training/train.py` runs two processes that read disjoint samples."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mpds.training.launch import cpu_relaunch

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = str(ROOT / "training" / "train.py")
ACCELERATE = [sys.executable, str(Path(sys.executable).with_name("accelerate")), "launch"]
SIMPLE_LAUNCHER_ENV = {"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no"}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_cpu_processes_from_the_literal_command_train_on_disjoint_samples_that_cover_the_split(
        dataset, base_model, tmp_path):
    import datasets

    output_dir = tmp_path / "two-cpu"
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("ACCELERATE_USE_CPU", "MPDS_NO_CPU_RELAUNCH")}
    environment.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]))
    command = [
        *ACCELERATE[1:], "--num_processes", "2", "--cpu", "--main_process_port", str(_free_port()), TRAIN_SCRIPT,
        "--task", "lora", "--dataset", dataset, "--base-model", base_model, "--output_dir", str(output_dir),
        "--genres", "comedy", "--resolution", "32", "--train_batch_size", "2", "--max_train_steps", "3",
        "--report_to", "none", "--save_sample_ids",
    ]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "relaunching as `accelerate launch --multi_gpu --num_processes 2`" in result.stderr
    run_info = (output_dir / "run_info.txt").read_text()
    assert "num_processes=2" in run_info and "distributed_type=DistributedType.MULTI_CPU" in run_info, run_info
    # 10 comedies, 5 per process, in batches of 2: 3 steps are each process's first epoch.
    seen = [set(Path(output_dir, "sample_ids", f"process_{k}.txt").read_text().split()) for k in range(2)]
    comedies = {str(row["id"]) for row in datasets.load_dataset(dataset, "posters", split="comedy")}
    assert len(seen[0]) == len(seen[1]) == 5
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == comedies
    assert (output_dir / "pytorch_lora_weights.safetensors").is_file() and (output_dir / "checkpoint-3").is_dir()


def test_the_relaunch_is_the_parent_command_with_multi_gpu_in_place_of_cpu():
    parent = [*ACCELERATE, "--num_processes", "2", "--cpu", "--main_process_port", "29511", TRAIN_SCRIPT,
              "--task", "lora", "--cpu-is-a-script-flag-here"]
    relaunch = cpu_relaunch(TRAIN_SCRIPT, dict(SIMPLE_LAUNCHER_ENV, ACCELERATE_MIXED_PRECISION="bf16"), parent)
    assert relaunch.num_processes == 2
    assert relaunch.command == [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
        "--main_process_port", "29511", "--mixed_precision", "bf16", TRAIN_SCRIPT,
        "--task", "lora", "--cpu-is-a-script-flag-here",
    ]


@pytest.mark.parametrize("case, environ, launch_options", [
    ("opted out", dict(SIMPLE_LAUNCHER_ENV, MPDS_NO_CPU_RELAUNCH="1"), ["--num_processes", "2", "--cpu"]),
    ("not on a CPU", dict(SIMPLE_LAUNCHER_ENV, ACCELERATE_USE_CPU="False"), ["--num_processes", "2"]),
    ("already ranked by torchrun", dict(SIMPLE_LAUNCHER_ENV, RANK="0", WORLD_SIZE="2", LOCAL_RANK="0"),
     ["--num_processes", "2", "--cpu"]),
    ("ranked by MPI", dict(SIMPLE_LAUNCHER_ENV, PMI_RANK="1"), ["--num_processes", "2", "--cpu"]),
    ("one process asked for", SIMPLE_LAUNCHER_ENV, ["--num_processes", "1", "--cpu"]),
    ("MPI launches them", SIMPLE_LAUNCHER_ENV, ["--num_processes", "2", "--cpu", "--mpirun_hostfile", "hosts"]),
])
def test_no_relaunch_unless_the_simple_launcher_started_one_of_several_cpu_processes(case, environ, launch_options):
    parent = [*ACCELERATE, *launch_options, TRAIN_SCRIPT, "--task", "lora"]
    assert cpu_relaunch(TRAIN_SCRIPT, environ, parent) is None, case


def test_no_relaunch_when_the_parent_launched_another_script_or_is_no_accelerate_launch():
    assert cpu_relaunch(TRAIN_SCRIPT, SIMPLE_LAUNCHER_ENV, [*ACCELERATE, "--num_processes", "2", "--cpu",
                                                             str(ROOT / "benchmarks" / "bench_training.py")]) is None
    assert cpu_relaunch(TRAIN_SCRIPT, SIMPLE_LAUNCHER_ENV, ["/bin/bash", TRAIN_SCRIPT, "--num_processes", "2",
                                                             "--cpu"]) is None
    assert cpu_relaunch(TRAIN_SCRIPT, SIMPLE_LAUNCHER_ENV, None) is None
