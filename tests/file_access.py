"""Tests of files a non-root service cannot read, run by a root test process."""

import contextlib
import ctypes
import os


@contextlib.contextmanager
def as_a_user_without_root_file_access():
    """Tests run as root, who reads a file whatever its mode. Clear
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's effective set
    for the block (worker processes forked meanwhile inherit it), so that a
    chmod 000 file is unreadable as it is to an indexer not running as root."""
    if os.geteuid() != 0:
        yield
        return

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3

    def call(function) -> None:
        if function(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), function.__name__)

    call(libc.capget)
    saved = data[0].effective
    data[0].effective &= ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    call(libc.capset)
    try:
        yield
    finally:
        data[0].effective = saved
        call(libc.capset)
