"""sharedstate: torn-free shared state, queues and message channels between C++ and Python.

    import sharedstate as ss
    st = ss.SharedState.create("ControllerMemory", ss.CONTROLLER)
    st.write(x=200, y=300, is_running=True)
    print(st.read())
"""
from . import _core
from ._core import CorruptSegmentError, LayoutMismatchError, WrongKindError
from ._layout import CONTROLLER, FieldSpec, Layout
from ._state import SharedState
from ._frames import Frames
from ._queue import *  # noqa: F401,F403
from ._channels import *  # noqa: F401,F403
from . import _queue, _channels
from ._waitset import WaitSet
from . import _aio

_aio.attach()
from . import bridge  # zenoh itself is imported only when a bridge is made

__version__ = getattr(_core, "__version__", "0")

__all__ = [
    "CONTROLLER", "CorruptSegmentError", "FieldSpec", "Frames", "Layout", "LayoutMismatchError",
    "SharedState", "WaitSet", "WrongKindError", *_queue.__all__, *_channels.__all__,
]
