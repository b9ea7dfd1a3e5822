"""A rank fails mid-epoch: ``fault.py raise|kill|hang|unused``; rank 1 fails at step 3.

``unused``: rank 1's step 3 skips a layer without ``find_unused_parameters``: its backward
refuses to start, and rank 0, already waiting for that layer's gradient, must hear of it.

The others must end within the timeout (FASTBP_DIST_TIMEOUT) with an error naming rank 1.
With FAULT_SLOW_PRINT=1 rank 0 prints its error a second late, as on a loaded machine: the
failed rank's abort must wait for it rather than kill it mid-traceback.
"""

import os
import signal
import sys
import time

import numpy as np

import fastbp as fb
import fastbp.distributed as dist
import fastbp.nn.functional as F
from fastbp import nn, optim
from fastbp.distributed import group  # its excepthook prints through _previous_excepthook

mode = sys.argv[1]
dist.init()
r = dist.rank()
if os.environ.get("FAULT_SLOW_PRINT") == "1" and r == 0:
    _print_error = group._previous_excepthook

    def _print_error_late(*exc_info):
        time.sleep(1.0)
        _print_error(*exc_info)

    group._previous_excepthook = _print_error_late
fb.manual_seed(0)
net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
ddp = dist.DistributedDataParallel(net)
opt = optim.SGD(ddp.parameters(), lr=0.1)
x, y = np.ones((4, 8), np.float32), np.zeros(4, np.int64)
if os.path.exists("/proc/self/maps"):
    # MPICH's shared-memory files, which an aborted job leaves in /dev/shm: the test
    # deletes them after the job.
    with open("/proc/self/maps") as maps:
        names = {line.split()[-1] for line in maps if "/dev/shm/mpich_shm_" in line}
    sys.stdout.write(" ".join(["SEGMENTS", *sorted(names)]) + "\n")  # one write: no
    sys.stdout.flush()  # interleaving with the other rank's line
for step in range(1000):
    if r == 1 and step == 3:
        if mode == "raise":
            raise ValueError("boom in the data pipeline")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "hang":
            time.sleep(600)
    if mode == "unused" and r == 1 and step == 3:
        ddp(fb.from_numpy(x))
        loss = F.cross_entropy(net[2](fb.from_numpy(x)), y)  # net[0] gets no gradient
    else:
        loss = F.cross_entropy(ddp(fb.from_numpy(x)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
print("finished without noticing", flush=True)
