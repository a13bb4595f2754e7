"""Starting or joining the Ray that runs the rollout workers, and leaving it again.

A collection with an empty `address` starts a local Ray for itself (no dashboard, every process on
127.0.0.1) and shuts it down at the end; with `auto` or HOST:PORT it joins an existing cluster
(`ray start --head` on the head node, `ray start --address HEAD:6379` on the others) and only
disconnects. The workers of a local Ray run at the collection's own priority (niceness 0, where
Ray's default is 15); on a cluster, `ray start` decides (set RAY_worker_niceness=0 there too). The processes of a local Ray die with the collection, even when it is killed
(SIGKILL): Ray ties them to the process that started them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass

from salus_engine.errors import SalusError

log = logging.getLogger(__name__)

LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray gives every process of a local Ray 127.0.0.1
(`ray._private.services.get_node_ip_address`) instead of the machine's address."""
NICENESS_VARIABLE = "RAY_worker_niceness"
"""Ray starts its worker processes at niceness 15 by default; a local Ray of a collection starts them
at 0 (unless this variable is set), since the rollout workers are the collection's whole work and
would otherwise yield the cores to anything else running on the machine."""
CONNECT_TIMEOUT_S = 5.0
"""Seconds to wait for a TCP connection to a HOST:PORT head node before calling it absent."""


class RayClusterError(SalusError):
    """Ray could not be started, or there is no Ray cluster at the given address; the message says what to do."""


@dataclass
class RayRuntime:
    """The Ray this collection uses."""

    address: str
    """Address of the cluster's GCS (HOST:PORT)."""
    started_here: bool
    """True when this collection started it (and shuts it down at the end)."""
    joined_here: bool
    """True when this collection called `ray.init` (and disconnects at the end); False when the
    process was already connected (e.g. a test that set up a cluster)."""


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise RayClusterError(f"no Ray cluster at {address} ({reason}); start one there with 'ray start --head' "
                              "or leave --address empty for a local Ray") from None


def start_or_join_ray(address: str) -> RayRuntime:
    """Starts a local Ray (`address` empty) or joins the cluster at `address` (`auto` or HOST:PORT).

    A process that is already connected to Ray keeps its connection (`address` is then ignored).
    Ray's own SIGTERM handler, which `ray.init` installs in the main thread, is replaced by the one
    that was there before, so a front end's graceful stop keeps working. The processes of a local
    Ray are started with SIGHUP and SIGINT blocked: a terminal hang-up or Ctrl-C reaches the
    collection (which stops its workers and then Ray), not Ray's own processes first.

    Raises:
        RayClusterError: nothing answers at `address`, `auto` finds no cluster on this machine, the
            cluster runs another Ray version, or a local Ray fails to start.
    """
    if not address:
        os.environ.setdefault(LOOPBACK_VARIABLE, "0")
        os.environ.setdefault(NICENESS_VARIABLE, "0")
    import ray

    _ray_logs_to_session_log()
    if ray.is_initialized():
        context = ray.get_runtime_context()
        return RayRuntime(address=context.gcs_address, started_here=False, joined_here=False)
    if address and address != "auto":
        _check_reachable(address)
    main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGINT}) if not address else None
    try:
        context = ray.init(address=address or "local", include_dashboard=False, configure_logging=False,
                           log_to_driver=False)
    except ConnectionError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = "on this machine" if address == "auto" else f"at {address}"
        raise RayClusterError(f"no Ray cluster {where} ({first}); start one with 'ray start --head' or leave "
                              "--address empty for a local Ray") from None
    except Exception as err:  # noqa: BLE001 - Ray raises plain RuntimeError/ValueError for a failed start or join
        log.warning("ray.init(address=%r) failed", address or "local", exc_info=True)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        what = f"cannot join the Ray cluster at {address}" if address else "cannot start a local Ray"
        raise RayClusterError(f"{what} ({first}); see the session log, check 'ray status', or run with "
                              "--workers 1 (no Ray)") from None
    finally:
        if blocked is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    gcs = getattr(context, "address_info", {}).get("gcs_address") or ray.get_runtime_context().gcs_address
    log.info("ray %s: %s (%s)", ray.__version__, "started a local Ray" if not address else f"joined {address}", gcs)
    return RayRuntime(address=gcs, started_here=not address, joined_here=True)


def _ray_logs_to_session_log() -> None:
    """Ray's driver-side messages go to the session log (through the root logger), not to the
    terminal: the console draws on stderr, and the command line keeps its one-line errors."""
    ray_logger = logging.getLogger("ray")
    for handler in list(ray_logger.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            ray_logger.removeHandler(handler)
    ray_logger.propagate = True


def leave_ray(runtime: RayRuntime) -> None:
    """Disconnects from Ray when this collection connected; a local Ray it started is shut down."""
    import ray

    if runtime.joined_here and ray.is_initialized():
        ray.shutdown()


def cluster_capacity() -> tuple[float, float]:
    """(CPU cores, GPUs) that the connected cluster's nodes offer in all (Ray's logical resources)."""
    import ray

    total = ray.cluster_resources()
    return float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0))
