"""Exemplar-free class-incremental learning (``secvit train --tasks T``): a ViT whose last
block is CaiT's class attention (:mod:`secvit.models.class_attention`), gated per task (:mod:`.gates`), with the
earlier classes' prototypes carried through learned drift projectors (:mod:`.drift`), and
the task loop with its two baselines, plain fine-tuning and joint training
(:mod:`.incremental`)."""
