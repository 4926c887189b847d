"""`./ccts bench`: benchmarks, each printing ratios against a baseline measured
in the same run. sessions: persistent rank groups against a fresh group per
case; apis: the reference's replicate and fully_shard against PyTorch's DDP
and FSDP2 (replicate_vs_ddp, fully_shard_vs_fsdp2; ranks starts the rank
groups, pytorch_baseline runs PyTorch's side, one process per rank)."""
