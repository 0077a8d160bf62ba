"""An MPC-budget supernet after ElasticViT (Tang et al., "ElasticViT: Conflict-aware Supernet
Training for Deploying Fast Vision Transformer on Diverse Mobile Devices", ICCV 2023), with
secure cost (rounds and bytes under MPC) as the complexity: the search space
(:mod:`.space`), the weight-sharing forward and extraction (:mod:`.supervit`), the secure
cost of a subnet (:mod:`.cost`), complexity- and performance-aware sampling
(:mod:`.sampler`), and training and search (:mod:`.run`; ``secvit supernet train|search``)."""
