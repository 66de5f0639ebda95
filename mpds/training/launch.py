"""`accelerate launch --cpu --num_processes N` with N > 1: start the N CPU processes it asked for.

accelerate (1.15) hands `--cpu` to its simple launcher, which starts several processes only through `mpirun`
(`--mpirun_hostfile`); without MPI it starts one ordinary process (huggingface/accelerate#2741). That process
can tell: the launcher set `ACCELERATE_USE_CPU`, no launcher gave it a rank, and its parent's command line is that
`accelerate launch`. `training/train.py` then replaces itself with the launch that does start N CPU processes:
the same command with `--multi_gpu` in place of `--cpu` (torchrun; accelerate uses gloo on CPUs), with
`ACCELERATE_USE_CPU` kept. Set `MPDS_NO_CPU_RELAUNCH=1` to keep the single process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

logger = logging.getLogger(__name__)

OPT_OUT_VARIABLE = "MPDS_NO_CPU_RELAUNCH"
# Set by torchrun, accelerate's multi-GPU launcher, MPI (Intel MPI / MPICH, Open MPI) for each process they start.
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")
LAUNCH_MODULE = "accelerate.commands.launch"


@dataclass
class CpuRelaunch:
    """How to start the CPU processes a single-process `accelerate launch --cpu` asked for."""

    num_processes: int
    command: list[str]  # `python -m accelerate.commands.launch --multi_gpu ... SCRIPT ARGS`


def accelerate_launch_arguments(command: Sequence[str]) -> Optional[list[str]]:
    """The arguments after `launch` when `command` (a process's command line) is an `accelerate launch`, else None.

    Example:
        >>> accelerate_launch_arguments(["/venv/bin/python", "/venv/bin/accelerate", "launch", "--cpu", "train.py"])
        ['--cpu', 'train.py']
    """
    for k, word in enumerate(command):
        name = os.path.splitext(os.path.basename(word))[0]
        following = list(command[k + 1:])
        if name == "accelerate" and following[:1] == ["launch"]:  # the `accelerate` console script
            return following[1:]
        if name == "accelerate-launch":
            return following
        if word == "-m" and following[:1] == [LAUNCH_MODULE]:
            return following[1:]
        if word == "-m" and following[:2] == ["accelerate.commands.accelerate_cli", "launch"]:
            return following[2:]
    return None


def cpu_relaunch(
    script: str,
    environ: Mapping[str, str],
    parent_command: Optional[Sequence[str]],
    parent_cwd: Optional[str] = None,
) -> Optional[CpuRelaunch]:
    """The launch to run instead of this process when `accelerate launch --cpu` started one process of several.

    Args:
        script: this process's training script (`sys.argv[0]`).
        environ: this process's environment.
        parent_command: the parent process's command line; `parent_cwd` its working directory (default: ours).

    Returns:
        None unless all of these hold: `ACCELERATE_USE_CPU` is true, no rank variable is set, `MPDS_NO_CPU_RELAUNCH`
        is not set, and the parent is `accelerate launch --cpu --num_processes N` (N > 1, no `--mpirun_hostfile`,
        no `--module`/`--no_python`) of `script`.
    """
    if environ.get(OPT_OUT_VARIABLE, "").lower() in ("1", "true", "yes"):
        return None
    if environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes"):
        return None
    if any(name in environ for name in RANK_VARIABLES):
        return None
    arguments = accelerate_launch_arguments(parent_command or [])
    if arguments is None:
        return None

    from accelerate.commands.launch import launch_command_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # a command line accelerate would reject is not ours
            parsed = launch_command_parser().parse_args(arguments)
    except SystemExit:
        return None
    if not parsed.cpu or parsed.mpirun_hostfile or (parsed.num_processes or 1) < 2 or parsed.module \
            or parsed.no_python:
        return None
    parent_script = os.path.join(parent_cwd or os.getcwd(), parsed.training_script)
    if os.path.realpath(parent_script) != os.path.realpath(script):
        return None

    # The parent's launch options as written, `--cpu` replaced; its precision pinned, since the multi-GPU launcher
    # reads accelerate's default config file, which `--cpu` ignored.
    options = arguments[: len(arguments) - 1 - len(parsed.training_script_args)]
    options = ["--multi_gpu" if option == "--cpu" else option for option in options]
    if parsed.mixed_precision is None:
        options += ["--mixed_precision", environ.get("ACCELERATE_MIXED_PRECISION", "no")]
    command = [sys.executable, "-m", LAUNCH_MODULE, *options, parsed.training_script, *parsed.training_script_args]
    return CpuRelaunch(parsed.num_processes, command)


def relaunch_cpu_processes_if_needed() -> None:
    """Replace this process by the launch of N CPU processes when `accelerate launch --cpu` started only one.

    Returns without doing anything in every other case (see `cpu_relaunch`); otherwise it does not return: the
    process becomes `python -m accelerate.commands.launch --multi_gpu ...` (same pid, so the launcher that started
    it waits for the new processes and reports their exit status).
    """
    import psutil  # an accelerate dependency

    try:
        parent = psutil.Process().parent()
        parent_command, parent_cwd = (parent.cmdline(), parent.cwd()) if parent is not None else (None, None)
    except psutil.Error:  # a parent we may not read is no accelerate launcher of ours
        return
    relaunch = cpu_relaunch(sys.argv[0], os.environ, parent_command, parent_cwd)
    if relaunch is None:
        return
    logger.warning(
        f"accelerate launch --cpu --num_processes {relaunch.num_processes} started one process (accelerate runs "
        "several CPU processes only through mpirun, huggingface/accelerate#2741): relaunching as `accelerate launch "
        f"--multi_gpu --num_processes {relaunch.num_processes}` with ACCELERATE_USE_CPU=true (torchrun, gloo). "
        f"Set {OPT_OUT_VARIABLE}=1 to keep one process."
    )
    sys.stdout.flush()
    sys.stderr.flush()
    environment = dict(os.environ, ACCELERATE_USE_CPU="true")
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # the simple launcher's; --main_process_ip/port carry the user's
        environment.pop(name, None)
    os.execve(sys.executable, relaunch.command, environment)
