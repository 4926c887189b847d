// replicate on one rank (a FileStore group of size 1) and DDP's bucket
// assignment; the multi-rank behaviour is the conformance cases' job.
#include "ccts_catch.h"
#include <torch/torch.h>

#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "ccts/nn/modules.h"
#include "ccts/replicate/reducer.h"
#include "ccts/replicate/replicate.h"
#include "single_rank_group.h"

using namespace ccts;
using replicate::compute_bucket_assignment_by_size;
using Assignment = std::vector<std::vector<std::size_t>>;
using testing::DefaultGroup;

namespace {

std::vector<torch::Tensor> linear_like(int layers) {
  std::vector<torch::Tensor> out;
  for (int i = 0; i < layers; ++i) {
    out.push_back(torch::zeros({2, 2}));  // 16 bytes
    out.push_back(torch::zeros({2}));     // 8 bytes
  }
  return out;
}

}  // namespace

TEST_CASE("bucket assignment closes a bucket once its size reaches the limit") {
  const auto tensors = linear_like(3);
  CHECK(compute_bucket_assignment_by_size(tensors, {24}) == Assignment{{0, 1}, {2, 3}, {4, 5}});
  CHECK(compute_bucket_assignment_by_size(tensors, {std::numeric_limits<int64_t>::max()}) ==
        Assignment{{0, 1, 2, 3, 4, 5}});
  // The first limit applies to the first bucket only; the last one repeats.
  CHECK(compute_bucket_assignment_by_size(tensors, {8, 40}) == Assignment{{0}, {1, 2, 3, 4}, {5}});
}

TEST_CASE("an explicit order keeps the buckets in that order, unsorted") {
  const auto tensors = linear_like(3);
  CHECK(compute_bucket_assignment_by_size(tensors, {24}, {5, 4, 3, 2, 1, 0}) ==
        Assignment{{5, 4}, {3, 2}, {1, 0}});
}

TEST_CASE("tensors of different dtypes never share a bucket") {
  std::vector<torch::Tensor> tensors{torch::zeros({4}), torch::zeros({4}, torch::kFloat64), torch::zeros({4})};
  CHECK(compute_bucket_assignment_by_size(tensors, {1 << 20}) == Assignment{{0, 2}, {1}});
}

TEST_CASE("replicate on one rank trains exactly like the module itself") {
  DefaultGroup group;
  auto local = std::make_shared<nn::Linear>(3, 2);
  auto dist = local->deep_copy();
  replicate::replicate(dist);
  CHECK(dist->type_name() == "DDPLinear");
  torch::Tensor x = torch::randn({4, 3});
  (*local)(x).tensor().pow(2).sum().backward();
  (*dist)(x).tensor().pow(2).sum().backward();
  auto lp = local->named_parameters();
  auto dp = dist->named_parameters();
  for (std::size_t i = 0; i < lp.size(); ++i) CHECK(torch::equal(lp[i].second.grad(), dp[i].second.grad()));
  auto state = replicate::replicate_state(*dist);
  REQUIRE(state);
  CHECK(state->param_names() == std::vector<std::string>{"weight", "bias"});
  CHECK_FALSE(state->device_ids().has_value());
}

TEST_CASE("replicate's argument checks carry PyTorch's messages") {
  DefaultGroup group;
  auto model = std::make_shared<nn::Linear>(2, 2);
  replicate::ReplicateOptions options;
  options.device_id = nn::Value::list({nn::Value("cpu")});
  CHECK_THROWS_WITH(replicate::replicate(model, options),
                    "Expected device_id to be int or torch.device, but got <class 'list'>");
  auto other = std::make_shared<nn::Linear>(2, 2);
  replicate::replicate(other);
  CHECK_THROWS_AS(other->deep_copy(), AssertionError);
}
