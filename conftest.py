"""Root conftest: pins native thread pools and wires the rlbench plugin (logic lives in rlbench/).

The thread variables must be set before NumPy, torch or ONNX Runtime load their pools: a
multi-threaded BLAS call (an SVD in a compression build, say) leaves worker threads spinning
on the cores the latency harness is timing. CleanRL's benchmarks pin OMP_NUM_THREADS=1 too.
"""

from rlbench.core.threads import default_thread_env

default_thread_env()

pytest_plugins = ["rlbench.plugin.pytest_plugin"]
