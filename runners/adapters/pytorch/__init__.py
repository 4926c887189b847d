"""The PyTorch adapter: the suite's protocol over real torch.nn and torch.distributed."""
