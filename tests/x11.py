"""A virtual screen for the desktop tests: Xvfb started on a free display, screenshots of it (Pillow's
ImageGrab over XCB), and closing a window the way a person's click on its close button does (the
WM_DELETE_WINDOW message, sent with libX11 through ctypes)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time

from PIL import ImageGrab


class Xvfb:
    """`with Xvfb() as x:` a screen at x.display (":N"); None from available() where Xvfb is not installed."""

    def __init__(self, size: str = "1366x900x24"):
        self.size = size
        self.proc = None
        self.display = None

    @staticmethod
    def available() -> bool:
        return shutil.which("Xvfb") is not None and ctypes.util.find_library("X11") is not None

    def __enter__(self):
        read, write = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", self.size, "-nolisten", "tcp"],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as f:
            self.display = f":{f.readline().strip()}"
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)

    def screenshot(self):
        return ImageGrab.grab(xdisplay=self.display)

    def find_window(self, title: str, timeout: float = 60) -> int | None:
        """The id of a top-level window whose title is `title`, waiting for it to appear."""
        x = _X11(self.display)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                found = x.find(title)
                if found:
                    return found
                time.sleep(0.5)
            return None
        finally:
            x.close()

    def close_window(self, window: int) -> None:
        x = _X11(self.display)
        try:
            x.delete_window(window)
        finally:
            x.close()


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
        ("pad", ctypes.c_long * 12),  # an XEvent is 24 longs
    ]


CLIENT_MESSAGE = 33


class _X11:
    def __init__(self, display: str):
        self.lib = ctypes.CDLL(ctypes.util.find_library("X11"))
        self.lib.XOpenDisplay.restype = ctypes.c_void_p
        self.lib.XDefaultRootWindow.restype = ctypes.c_ulong
        self.lib.XInternAtom.restype = ctypes.c_ulong
        self.lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        self.lib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.lib.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_void_p] * 4
        self.lib.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
        self.lib.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        self.lib.XFlush.argtypes = [ctypes.c_void_p]
        self.lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self.lib.XFree.argtypes = [ctypes.c_void_p]
        self.dpy = self.lib.XOpenDisplay(display.encode())
        if not self.dpy:
            raise RuntimeError(f"cannot open X display {display}")

    def _children(self, window: int) -> list[int]:
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, n = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not self.lib.XQueryTree(
            self.dpy, window, ctypes.byref(root), ctypes.byref(parent), ctypes.byref(children), ctypes.byref(n)
        ):
            return []
        out = [children[i] for i in range(n.value)]
        if children:
            self.lib.XFree(children)
        return out

    def find(self, title: str) -> int | None:
        stack = [self.lib.XDefaultRootWindow(self.dpy)]
        while stack:
            window = stack.pop()
            name = ctypes.c_char_p()
            if self.lib.XFetchName(self.dpy, window, ctypes.byref(name)) and name.value == title.encode():
                return window
            stack.extend(self._children(window))
        return None

    def delete_window(self, window: int) -> None:
        event = _ClientMessage()
        event.type = CLIENT_MESSAGE
        event.window = window
        event.message_type = self.lib.XInternAtom(self.dpy, b"WM_PROTOCOLS", 0)
        event.format = 32
        event.data[0] = self.lib.XInternAtom(self.dpy, b"WM_DELETE_WINDOW", 0)
        self.lib.XSendEvent(self.dpy, window, 0, 0, ctypes.byref(event))
        self.lib.XFlush(self.dpy)

    def close(self) -> None:
        self.lib.XCloseDisplay(self.dpy)
