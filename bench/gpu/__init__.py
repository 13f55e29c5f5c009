"""GPU performance of training and inference in one prepared run (issue 20); see :mod:`bench.gpu.run`."""
