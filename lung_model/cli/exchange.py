"""Hospital integration commands: the DICOM receiver, and results out to the PACS and EHR."""

from __future__ import annotations

import argparse
import signal
import threading

from lung_model.cli.exit_codes import ExitCode
from lung_model.settings import get_settings


def cli_receive(args: argparse.Namespace) -> ExitCode:
    """Run the DICOM storage SCP until SIGTERM or Ctrl-C."""
    from lung_model.exchange.receiver import serve

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(get_settings(), stop)
    return ExitCode.OK


def cli_send_results(args: argparse.Namespace) -> ExitCode:
    """Plan and send the new report versions; retry the due ones."""
    from lung_model.pipelines.results_out import run_results_out

    outcome = run_results_out(get_settings())
    print(
        f"planned {outcome['planned']} deliveries, sent {outcome['sent']},"
        f" failed {outcome['failed']} (retried when due)"
    )
    for skipped in outcome["skipped"]:
        print(f"skipped: {skipped}")
    return ExitCode.OK if not outcome["failed"] else ExitCode.ERROR
