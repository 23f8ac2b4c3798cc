"""reasondistill: distill a teacher's reasoning into a LoRA adapter on a student model.

The package root imports nothing heavy; the torch-free core lives in
``reasondistill.data`` (examples, the format contract, splits, sampling) and
``reasondistill.evaluate.answers`` (answer extraction and checking).
"""

__version__ = "0.1.0"

import warnings

# PEFT (0.21) still calls transformers' `is_gradient_checkpointing`, which transformers 5.25
# deprecated; every LoRA model built or loaded would print it. The warning is for PEFT's
# maintainers, not our users; only this exact message is silenced.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                        category=FutureWarning)
