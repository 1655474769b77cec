"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, then stop (`TrainingSession.steps`)."""

from __future__ import annotations


class DeferredSignals:
    """While active, SIGINT and SIGTERM only set a flag (the training loop then finishes its step,
    checkpoints and stops); a second signal interrupts at once. A no-op outside the main thread."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        import signal

        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name

    def __exit__(self, *exc) -> None:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
