"""Logging for the ``kd-nmt`` entry points (never called on import).

* ``setup_logging``: fairseq_cli's own format (``time | LEVEL | logger | message``), so a
  ``kd-nmt`` log reads and parses like a ``fairseq-train`` one; level from ``$LOGLEVEL``.
* ``quiet_logging``: warnings only. Importing fairseq sets the root logger to DEBUG
  (wav2vec2_classification) or INFO (text_to_speech); reports on stdout stay free of it.
* ``status``: a command's own progress lines, ``kd-nmt CMD: message`` on stderr, printed (not
  logged) so they appear whatever fairseq did to the logging configuration.
"""
import logging
import os
import sys

FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_logging(stream=None):
    """Log INFO (or ``$LOGLEVEL``) and above to ``stream`` (default stderr) in fairseq's format.

    Importing fairseq already installed a root handler (stderr, ``LEVEL:name:message``, DEBUG):
    the first plain ``StreamHandler`` is reused with this format and stream, further ones are
    dropped. Other handlers (a test's log capture, a file) are left alone.
    """
    root = logging.getLogger()
    plain = [h for h in root.handlers if type(h) is logging.StreamHandler]
    for extra in plain[1:]:
        root.removeHandler(extra)
    if plain:
        handler = plain[0]
        # not setStream(): it flushes the old stream, which may be closed (a pytest capture file)
        with handler.lock:
            handler.stream = sys.stderr if stream is None else stream
    else:
        handler = logging.StreamHandler(sys.stderr if stream is None else stream)
        root.addHandler(handler)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root.setLevel(os.environ.get("LOGLEVEL", "INFO").upper())


def quiet_logging():
    """Only warnings and errors from fairseq, sacreBLEU, matplotlib and the rest."""
    logging.getLogger().setLevel(logging.WARNING)


def status(command):
    """A function printing ``kd-nmt COMMAND: message`` lines to stderr (flushed at once)."""

    def say(message):
        print(f"kd-nmt {command}: {message}", file=sys.stderr, flush=True)

    return say
