"""Post-training quantization (``secvit quantize``): RepQ-ViT, I&S-ViT and a min-max
baseline (:mod:`.ptq`), their quantizers (:mod:`.quantizers`), and the checkpoint a run
writes (:mod:`.run`)."""
