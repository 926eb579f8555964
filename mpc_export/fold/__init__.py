from .passes import lower_for_mpc

__all__ = ["lower_for_mpc"]
