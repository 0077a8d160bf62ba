"""Knowledge distillation: losses and teachers for ``secvit train --teacher C --distill M``."""
