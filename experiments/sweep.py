"""Running an experiment's cells: one after another here, or as Ray tasks (``--ray [ADDRESS]``).

Both ways take the same cells in the same order and hand every finished cell to the same
``on_done`` in this process (which appends it to the experiment's CSV), so the CSV, the resume
semantics (finished cells are skipped; a crash loses only the cells in flight) and the report
are the same. With Ray each cell is one task that declares its CPU and GPU needs; a cell starts
once the cells it needs (e.g. the RL cell whose budget random search takes) have finished.

On a cluster the workers must see the same paths as this process: the data root, the work
folder (run folders, checkpoints, test-score caches) and the model cache on a shared
filesystem. Ray is an optional extra: ``pip install "rlprompt[ray]"``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

logger = logging.getLogger("experiments.sweep")

LOCAL = "local"
"""``--ray`` with no address: start Ray on this machine."""


@dataclass(frozen=True)
class Resources:
    """What one cell asks Ray for."""

    num_cpus: float = 2
    """CPU cores per cell (the scorer's matmuls use them all)."""
    num_gpus: float = 0
    """GPUs per cell (a fraction shares one)."""


DEFAULT_RESOURCES = Resources()


def add_ray_arguments(parser) -> None:
    """``--ray [ADDRESS]``, ``--cpus-per-cell`` and ``--gpus-per-cell`` on a harness's parser."""
    parser.add_argument(
        "--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
        help="run the cells as Ray tasks: on this machine, or on the cluster at ADDRESS (e.g. ray://head:10001 or auto)",
    )
    parser.add_argument("--cpus-per-cell", type=float, default=Resources.num_cpus, help="with --ray: CPU cores each cell asks for (default: 2)")
    parser.add_argument("--gpus-per-cell", type=float, default=Resources.num_gpus, help="with --ray: GPUs each cell asks for (default: 0)")


def run_cells(
    cells: Sequence[Hashable],
    run_one: Callable[[Hashable, dict], Any],
    on_done: Callable[[Hashable, Any], None],
    needs: Callable[[Hashable], Sequence[Hashable]] = lambda key: (),
    done: dict | None = None,
    ray_address: str | None = None,
    resources: Resources = DEFAULT_RESOURCES,
    ray_init: dict | None = None,
) -> None:
    """Run ``cells`` (those not in ``done``), handing each result to ``on_done`` as it finishes.

    Args:
        cells: Cell keys, in the order a serial run takes them.
        run_one: ``run_one(key, finished)`` computes one cell; ``finished`` holds the results of
            the cells it needs. With Ray it runs in a worker, so it must pickle (a top-level
            function or a ``functools.partial`` of one).
        on_done: Called here with each finished cell's key and result.
        needs: The cells a cell needs finished first.
        done: Results already finished (skipped, and available to the cells that need them).
        ray_address: None: one after another in this process; :data:`LOCAL`: Ray on this
            machine; anything else: the address of a Ray cluster.
        resources: What each cell asks Ray for.
        ray_init: More ``ray.init`` arguments (tests start a small local Ray).

    Raises:
        SystemExit: A cell needs one that is neither finished nor planned; or, with Ray, cells
            failed (the others still finished and were handed to ``on_done``).
    """
    done = dict(done or {})
    todo = [key for key in cells if key not in done]
    if not todo:
        return
    if ray_address is None:
        for key in todo:
            _check_needs(key, needs(key), done)
            result = run_one(key, {need: done[need] for need in needs(key)})
            done[key] = result
            on_done(key, result)
        return
    _run_on_ray(todo, run_one, on_done, needs, done, ray_address, resources, ray_init or {})


def _check_needs(key: Hashable, wanted: Sequence[Hashable], done: dict) -> None:
    missing = [need for need in wanted if need not in done]
    if missing:
        raise SystemExit(f"cell {key} needs {missing} first")


def _run_on_ray(todo, run_one, on_done, needs, done, address, resources, ray_init) -> None:
    try:
        import ray
    except ImportError as error:
        raise SystemExit('--ray needs Ray: pip install "rlprompt[ray]"') from error

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address == LOCAL else address, logging_level=logging.WARNING, **ray_init)
    task = ray.remote(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)(_call)
    waiting, in_flight, failed = list(todo), {}, []
    try:
        while waiting or in_flight:
            for key in list(waiting):
                wanted = needs(key)
                if any(need in failed for need in wanted):
                    waiting.remove(key)
                    failed.append(key)
                elif all(need in done for need in wanted):
                    in_flight[task.remote(run_one, key, {need: done[need] for need in wanted})] = key
                    waiting.remove(key)
            if not in_flight:
                if waiting:
                    _check_needs(waiting[0], needs(waiting[0]), done)
                break
            finished, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in finished:
                key = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as error:
                    logger.error("cell %s failed: %s", key, str(error).splitlines()[0])
                    failed.append(key)
                    continue
                done[key] = result
                on_done(key, result)
    finally:
        if started_here:
            ray.shutdown()
    if failed:
        raise SystemExit(f"{len(failed)} cell(s) failed or could not start: {', '.join(map(str, failed))}; re-run to retry them")


def _call(run_one, key, finished):
    return run_one(key, finished)
