"""``python _driver.py DELAY ARGS...``: run ``facefit`` ARGS with the fake pipeline (for the
kill test, which needs a real driver process to kill)."""

import sys

import fakes

from facefit import cli

if __name__ == "__main__":
    fakes.DELAY = float(sys.argv[1])
    fakes.install(setattr, lambda d, k, v: d.__setitem__(k, v))
    sys.exit(cli.main(sys.argv[2:]))
