"""`python tests/capped_predict.py ARGS`: `python -m pipeline.predict ARGS` with the address space capped at what the
imports took plus CAP_MB (environment): an allocation for a network or an input beyond that fails, not the machine."""
import os
import resource
import sys

import segmentation_models_pytorch  # noqa: F401  the code's own footprint, before the cap

import pipeline.predict

size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
cap = size + int(os.environ["CAP_MB"]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
sys.argv = ["pipeline.predict", *sys.argv[1:]]
sys.exit(pipeline.predict.main())
