"""Runs Tornado's chat demo, unmodified, on loopback only (or at --address).

    python serve.py DEMO_DIR --port=PORT [--address=IP] [demo options]

DEMO_DIR is the demos/chat folder of a tornado source distribution (bench/tornado/setup
fetches the one of tornado 4.5.3, whose MessageBuffer keeps the set of waiting Futures
that on_connection_close removes). The demo calls app.listen(port), which binds every
interface; this wrapper makes every listen bind 127.0.0.1 instead (or --address: the
packet link's server side is a network namespace of its own), and changes nothing else.
"""
import os
import sys

import tornado.web

ADDRESS = "127.0.0.1"
for arg in list(sys.argv[2:]):
    if arg.startswith("--address="):
        ADDRESS = arg.split("=", 1)[1]
        sys.argv.remove(arg)

_listen = tornado.web.Application.listen


def listen_on_loopback(self, port, address="", **kwargs):
    return _listen(self, port, address=ADDRESS, **kwargs)


tornado.web.Application.listen = listen_on_loopback

demo = os.path.abspath(sys.argv[1])
sys.path.insert(0, demo)
os.chdir(demo)
sys.argv = ["chatdemo.py"] + sys.argv[2:]

import chatdemo  # noqa: E402  (after the patch, from the demo's own folder)

chatdemo.main()
