"""mpc-export: turn a trained CIFAR-10 CNN into the files a FANNG-MPC / SCALE-MAMBA secure run needs."""

__version__ = "0.1.0"
