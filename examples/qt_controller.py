"""A Qt widget that shows the controller state live, with no timer and no polling.

    python qt_controller.py ControllerMemory [--seconds S] [--demo]
    (pip install PySide6-Essentials; headless: QT_QPA_PLATFORM=offscreen)

The WaitSet's event-loop handle wakes Qt's own loop: ``ws.fileno()`` through a
QSocketNotifier on Linux, ``ws.handle`` through a QWinEventNotifier on Windows. When it fires,
``ws.wait(timeout=0)`` says what is ready (and re-arms the handle), and the label is redrawn.
The GUI thread never blocks and no helper thread exists. ``--demo`` also writes a few updates
from a thread, and every redraw is printed (so a test, or a terminal, can see them).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

import sharedstate as ss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("state")
    ap.add_argument("--seconds", type=float, default=0.0, help="quit after S seconds (0: when the window closes)")
    ap.add_argument("--demo", action="store_true", help="write a few updates from a thread")
    args = ap.parse_args(argv)
    try:
        from PySide6.QtCore import QSocketNotifier, QTimer
        from PySide6.QtWidgets import QApplication, QLabel
    except ImportError as e:
        print(f"qt_controller: PySide6 is not installed ({e}): pip install PySide6-Essentials", file=sys.stderr)
        return 2

    app = QApplication(sys.argv[:1])
    st = ss.SharedState.create(args.state, ss.CONTROLLER, exist_ok=True)
    ws = ss.WaitSet()
    ws.add(st)
    label = QLabel("waiting for the game...")
    label.setWindowTitle(f"sharedstate: {args.state}")
    label.resize(360, 60)

    def on_ready(*_: object) -> None:
        try:
            ready = ws.wait(timeout=0)  # what is ready now; never blocks the GUI thread
        except TimeoutError:
            return
        if st in ready:
            s = st.read()
            text = f"v{st.version}  x={s.x}  y={s.y}  running={s.is_running}"
            label.setText(text)
            print(f"redraw: {text}", flush=True)

    if sys.platform == "win32":
        from PySide6.QtCore import QWinEventNotifier
        notifier = QWinEventNotifier(ws.handle)
        notifier.activated.connect(on_ready)
    else:
        notifier = QSocketNotifier(ws.fileno(), QSocketNotifier.Type.Read)
        notifier.activated.connect(on_ready)

    if args.demo:
        def demo() -> None:
            for i in range(1, 4):
                time.sleep(0.1)
                st.write(x=i, y=2 * i, is_running=True)
        threading.Thread(target=demo, daemon=True).start()
    if args.seconds > 0:
        QTimer.singleShot(int(args.seconds * 1000), app.quit)  # the run's length, not a poll
    label.show()
    rc = app.exec()
    notifier.setEnabled(False)
    ws.discard(st)
    st.close()
    return int(rc)


if __name__ == "__main__":
    raise SystemExit(main())
