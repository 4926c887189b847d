#pragma once
// The DTensor stand-in: which tensors fully_shard registered as sharded, with
// their layout and how to gather their global value. Entries hold the tensor
// weakly, so a freed tensor (or a new one at its address) is never mistaken
// for a sharded one.
#include <functional>

#include <torch/types.h>

#include "ccts/fully_shard/fully_shard.h"

namespace ccts::fully_shard::detail {

using FullTensorFn = std::function<torch::Tensor()>;  // a collective

// This rank's part of a full value, laid out as the sharded tensor.
using ShardOfFn = std::function<torch::Tensor(const torch::Tensor& full)>;

void mark_sharded(const torch::Tensor& tensor, ShardedLayout layout, FullTensorFn full, ShardOfFn shard_of = nullptr);
// The registered gatherer of a sharded tensor, or nullptr.
FullTensorFn full_tensor_fn(const torch::Tensor& tensor);
ShardOfFn shard_of_fn(const torch::Tensor& tensor);

}  // namespace ccts::fully_shard::detail
