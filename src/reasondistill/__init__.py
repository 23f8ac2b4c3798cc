"""reasondistill: distill a teacher's reasoning into a LoRA adapter on a student model.

The package root imports nothing heavy; the torch-free core lives in
``reasondistill.data`` (examples, the format contract, splits, sampling) and
``reasondistill.evaluate.answers`` (answer extraction and checking).
"""

__version__ = "0.1.0"
