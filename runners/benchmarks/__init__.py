"""`./ccts bench`: benchmarks, each printing ratios against a baseline measured
in the same run. sessions: persistent rank groups against a fresh group per
case; apis: the reference's replicate and fully_shard against PyTorch's
(pytorch_baseline runs PyTorch's side, one process per rank)."""
