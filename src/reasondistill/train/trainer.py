"""``DistillTrainer``: the transformers ``Trainer`` with only what the method changes.

- packed micro-batches attend within each sequence (forward *and* the backward, where
  activation checkpointing recomputes the forward) through :mod:`.packing`;
- the training order comes from our sampler (type-stratified, epoch-aware, aligned with the
  effective batch), everything else — accumulation, mixed precision, checkpoints, resume,
  ``report_to``, ``accelerate launch`` — is the stock Trainer;
- the loss is the objective's (:mod:`reasondistill.distill.objective`): cross-entropy on
  completion tokens only, plus, with a teacher, the hidden-state and logit terms; the
  teacher's signal comes from ``teacher.signal(batch)``; the ``lm_head`` runs only at the
  positions that predict one (``logits_to_keep`` as a boolean mask): on a 49k vocabulary
  that head is a fifth of the forward pass, and prompt tokens do not need it; where the head
  is a plain frozen linear, it is fused with the loss chunk by chunk (:mod:`.head_loss`), so
  the full logits never exist;
- NEFTune noise is scaled by each sequence's own length, so packing does not weaken it;
- it counts the real (non-padding) tokens it trains on, for tokens/s in ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import Trainer

from reasondistill.distill.losses import StepTensors
from reasondistill.distill.objective import Objective
from reasondistill.tokenize import IGNORE_INDEX
from reasondistill.train.head_loss import head_returns_hidden_states, kept_chunk_buffers


class DistillTrainer(Trainer):
    def __init__(self, *args, sampler=None, neftune_alpha: float = 0.0, objective=None,
                 teacher=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._refuse_sharded_parameters()
        self.order_sampler = sampler
        self.objective = objective or Objective((("ce", 1.0),), {})
        self.teacher = teacher  # a reasondistill.distill teacher source, or None
        self._term_sums: dict[str, float] = {}
        self._term_micro_batches = 0
        self.neftune_alpha = neftune_alpha
        self.tokens_seen = 0
        # Our compute_loss normalises by the number of supervised tokens in the whole
        # accumulated batch, which the Trainer counts when it believes the model takes
        # loss kwargs; it then skips its own division by the accumulation steps.
        self.model_accepts_loss_kwargs = True
        self._position_seq_lengths: torch.Tensor | None = None
        self._fused_head: bool | None = None  # decided once, against the head's contract
        self._neftune_handle = None
        if neftune_alpha > 0:
            embeddings = self.accelerator.unwrap_model(self.model).get_input_embeddings()
            self._neftune_handle = embeddings.register_forward_hook(self._neftune_hook)

    def _refuse_sharded_parameters(self) -> None:
        """FSDP and DeepSpeed ZeRO-3 are refused (:mod:`.distributed` says why); the CLI
        checks the launch before loading weights, this is the check for library callers."""
        from reasondistill.train.distributed import refuse_sharded_parameters

        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if self.is_fsdp_enabled:
            refuse_sharded_parameters(("FSDP", "the Trainer's accelerator runs FSDP"))
        if self.is_deepspeed_enabled and getattr(plugin, "zero_stage", None) == 3:
            refuse_sharded_parameters(("DeepSpeed ZeRO-3",
                                       "the Trainer's DeepSpeed config has zero stage 3"))

    def _get_train_sampler(self, train_dataset=None):
        return self.order_sampler if self.order_sampler is not None else super()._get_train_sampler(
            train_dataset)

    def _neftune_hook(self, module, inputs, output):
        """NEFTune (Jain et al. 2023): uniform noise of scale α/√(L·d) on input embeddings,
        L being the length of the sequence each token belongs to. Training only."""
        if not module.training or self._position_seq_lengths is None:
            return output
        lengths = self._position_seq_lengths.to(output.device, output.dtype).unsqueeze(-1)
        scale = self.neftune_alpha / torch.sqrt(lengths * output.shape[-1])
        return output + torch.empty_like(output).uniform_(-1, 1) * scale

    def train(self, *args, **kwargs):
        teacher_model = getattr(self.teacher, "model", None)
        if teacher_model is not None and teacher_model is not self.accelerator.unwrap_model(self.model):
            teacher_model.to(self.args.device)  # another model: beside the student
        with self.training_speedups():
            return super().train(*args, **kwargs)

    @contextlib.contextmanager
    def training_speedups(self):
        """What the whole run trains under (also for benchmarks that call the loss directly).

        With a packed collator, the model attends per sequence. Under bf16 autocast, PEFT's
        cast of each LoRA input to the adapter's float32 is switched off: autocast casts it
        straight back to bf16 for the matmul, so the cast only copied every activation twice
        (bf16 → fp32 → bf16 is exact; same numbers). Plain LoRA linears add their update
        inside one ``addmm`` (:mod:`.lora_fused`). Llama-style RMSNorms keep less for the
        backward pass (:mod:`.lean_layers`). The fused head keeps its chunk buffers from step
        to step (:func:`.head_loss.kept_chunk_buffers`).
        Each is checked against its contract first (:mod:`reasondistill.speedups`); one that
        fails its check is left out with a warning and the stock path runs.
        """
        from reasondistill.speedups import usable
        from reasondistill.train.collate import packs_rows
        from reasondistill.train.lean_layers import lean_norms, private_softmax_backward
        from reasondistill.train.lora_fused import fused_lora_linears
        from reasondistill.train.packing import packed_attention

        model = self.accelerator.unwrap_model(self.model)
        # every check runs on the stock model, before any speed-up is switched on
        self._fused_head = self._head_can_fuse(model)
        cast_switch = self.args.bf16 and usable("peft_input_cast", model)
        fused_lora, lean = usable("fused_lora", model), usable("lean_norms", model)
        with contextlib.ExitStack() as stack:
            if packs_rows(self.data_collator):
                # the recipe chose packing only after usable("packed_attention") said yes
                stack.enter_context(packed_attention(model))
            if cast_switch:
                from peft.helpers import disable_input_dtype_casting

                stack.enter_context(disable_input_dtype_casting(model))
            if fused_lora:
                stack.enter_context(fused_lora_linears(model))
            if lean:
                stack.enter_context(lean_norms(model))
            stack.enter_context(kept_chunk_buffers())
            stack.enter_context(private_softmax_backward(usable("softmax_backward")))
            yield

    def _head_can_fuse(self, unwrapped) -> bool:
        """Sharded engines (FSDP, DeepSpeed ZeRO-3) gather the head's weight only inside its
        own forward, so they keep the unfused path; elsewhere the fused head's contract
        decides."""
        from reasondistill.speedups import usable

        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        return not sharded and usable("fused_head", unwrapped)

    def training_step(self, model, inputs, num_items_in_batch=None):
        lengths = inputs.pop("sequence_lengths", None)
        if lengths is None:
            return super().training_step(model, inputs, num_items_in_batch)
        from reasondistill.train.packing import packed_forward

        with packed_forward(lengths.tolist()):
            return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The objective's loss (:mod:`reasondistill.distill.objective`): the completion
        cross-entropy alone for trace distillation, plus the teacher's terms when a teacher
        is set. The teacher runs first, before NEFTune's noise is switched on for the step."""
        labels = inputs.pop("labels")
        distill = {key: inputs.pop(key) for key in list(inputs)
                   if key.startswith(("align_", "teacher_")) or key == "row_index"}
        # Position t predicts token t+1: keep the head only where that token is supervised.
        targets = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != IGNORE_INDEX
        n_local = int(keep.sum())
        denominator = float(num_items_in_batch) if num_items_in_batch is not None else max(n_local, 1)
        step = StepTensors(targets=targets[keep[:, :-1]], denominator=denominator,
                           share=n_local / denominator)
        objective = self.objective
        signal = None
        if self.teacher is not None and objective.reads_teacher:
            kept_positions = keep.reshape(-1).nonzero().squeeze(1)
            signal = self.teacher.signal(
                {**inputs, **distill}, final_positions=kept_positions if objective.needs("teacher_final") else None)
        self._position_seq_lengths = inputs.pop("position_seq_lengths", None)
        unwrapped = self.accelerator.unwrap_model(model)
        if self._fused_head is None:  # compute_loss called outside train()
            self._fused_head = self._head_can_fuse(unwrapped)
        fused = not return_outputs and self._fused_head
        needs_states = objective.needs("student_aligned") or (
            objective.needs("final_hidden") and not fused)
        head_context = head_returns_hidden_states(unwrapped) if fused else contextlib.nullcontext()
        with head_context:
            outputs = model(**inputs, logits_to_keep=keep, use_cache=False,
                            **({"output_hidden_states": True} if needs_states else {}))
        self._position_seq_lengths = None
        head = unwrapped.get_output_embeddings()
        if fused:
            step.final_hidden = outputs.logits.reshape(-1, outputs.logits.shape[-1])
            step.head_weight = head.weight
        else:
            step.logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])
            if objective.needs("final_hidden"):
                last = outputs.hidden_states[-1]
                step.final_hidden = last.reshape(-1, last.shape[-1])[keep.reshape(-1)]
                step.head_weight = head.weight
        if signal is not None:
            self._fill_alignment(step, outputs, distill, signal, unwrapped)
        loss, values = objective(step, agree_across_processes=(
            self._from_main_process if self.accelerator.num_processes > 1 else None))
        for name, value in values.items():
            self._term_sums[name] = self._term_sums.get(name, 0.0) + value
        self._term_micro_batches += 1
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes
        mask = inputs.get("attention_mask")
        self.tokens_seen += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        return (loss, outputs) if return_outputs else loss

    def _fill_alignment(self, step, outputs, distill, signal, unwrapped) -> None:
        """The student's pooled states at the aligned groups, projected into the teacher's
        space, beside the teacher's."""
        from reasondistill.distill.projections import attached
        from reasondistill.distill.teacher import pool

        projections = attached(unwrapped)
        groups = int(distill["align_groups"])
        states = outputs.hidden_states
        for index, layer in enumerate(self.teacher.layer_map.student_layers):
            pooled = pool(states[layer], distill["align_student_positions"],
                          distill["align_student_groups"], groups)
            step.student_aligned.append(projections(index, pooled) if projections is not None
                                        else pooled)
        step.teacher_aligned = signal.aligned
        step.teacher_final, step.teacher_head_weight = signal.final, signal.head_weight

    def _from_main_process(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every rank. Rank 0's first micro-batch is the one a single
        process with the same effective batch measures first, so the balancing factors (and
        with them the loss curve) do not depend on the number of processes."""
        from accelerate.utils import broadcast

        return broadcast(tensor.to(self.args.device), from_process=0).cpu()

    def log(self, logs: dict, *args, **kwargs) -> None:
        """Adds each objective term's mean over the logging window (and its share of the
        total) to the Trainer's log line, so metrics.jsonl and TensorBoard/W&B get them."""
        if self._term_micro_batches and "loss" in logs:
            steps = self._term_micro_batches / max(1, self.args.gradient_accumulation_steps)
            sums = self._term_sums
            if self.accelerator.num_processes > 1:
                # each rank holds its micro-batches' part of the effective batch's terms
                # (normalised by the whole batch's tokens): the batch's value is their sum.
                # Every rank logs at the same step (the Trainer gathers the loss just before).
                names = sorted(sums)
                local = torch.tensor([sums[name] for name in names], dtype=torch.float64,
                                     device=self.args.device)
                sums = dict(zip(names, self.accelerator.reduce(local, reduction="sum").tolist()))
            means = {name: total / steps for name, total in sums.items()}
            logs.update(self.objective.log_record(means))
            self._term_sums, self._term_micro_batches = {}, 0
        super().log(logs, *args, **kwargs)

    def remove_neftune(self) -> None:
        if self._neftune_handle is not None:
            self._neftune_handle.remove()
            self._neftune_handle = None

