// fully_shard on one rank (a FileStore group of size 1): the registered
// parameters stand in for DTensors, and training matches the plain module.
#include "ccts_catch.h"
#include <torch/torch.h>

#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "ccts/fully_shard/fully_shard.h"
#include "ccts/nn/modules.h"
#include "single_rank_group.h"

using namespace ccts;

using testing::DefaultGroup;

TEST_CASE("sharded parameters report their global shape and Shard(0)") {
  DefaultGroup group;
  auto model = std::make_shared<nn::Linear>(4, 5);
  const torch::Tensor original = model->parameter("weight").detach().clone();
  fully_shard::fully_shard(model);
  CHECK(model->type_name() == "FSDPLinear");
  auto layout = fully_shard::sharded_layout(model->parameter("weight"));
  REQUIRE(layout);
  CHECK(layout->global_shape == std::vector<int64_t>{5, 4});
  CHECK(layout->placements == std::vector<std::string>{"Shard(0)"});
  CHECK(torch::equal(fully_shard::full_tensor(model->parameter("weight")), original));
  CHECK_FALSE(fully_shard::sharded_layout(original));
  CHECK(fully_shard::managed_parameters(*model) == std::vector<std::string>{"weight", "bias"});
}

TEST_CASE("a root keeps its parameters gathered after forward and holds shards after backward") {
  DefaultGroup group;
  auto local = std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(3, 3), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(3, 1)});
  auto dist = local->deep_copy();
  fully_shard::fully_shard(dist->child("0"));
  fully_shard::fully_shard(dist);
  torch::Tensor x = torch::randn({2, 3});
  auto y = (*dist)(x).tensor();
  CHECK(fully_shard::sharded_layout(dist->child("0")->parameter("weight")));     // resharded
  CHECK_FALSE(fully_shard::sharded_layout(dist->child("2")->parameter("weight")));  // root keeps
  y.sum().backward();
  (*local)(x).tensor().sum().backward();
  CHECK(fully_shard::sharded_layout(dist->child("2")->parameter("weight")));
  auto lp = local->named_parameters();
  auto dp = dist->named_parameters();
  REQUIRE(lp.size() == dp.size());
  for (std::size_t i = 0; i < lp.size(); ++i) {
    INFO(lp[i].first);
    CHECK(torch::allclose(lp[i].second.grad(), dp[i].second.grad()));
  }
}

TEST_CASE("fully_shard's argument checks carry PyTorch's messages") {
  DefaultGroup group;
  fully_shard::FullyShardOptions options;
  options.reshard_after_forward = nn::Value(std::int64_t{3});
  CHECK_THROWS_WITH(fully_shard::fully_shard(std::make_shared<nn::Linear>(2, 2), options),
                    "If passing reshard_after_forward as an int, it should be a factor of 1, not 3");
  auto list = std::make_shared<nn::ModuleList>(std::vector<std::shared_ptr<nn::Module>>{std::make_shared<nn::ReLU>()});
  CHECK_THROWS_WITH(fully_shard::fully_shard(list),
                    "fully_shard does not support containers that do not implement forward: ModuleList(\n"
                    "  (0): ReLU()\n)");
  auto model = std::make_shared<nn::Linear>(2, 2);
  fully_shard::fully_shard(model);
  CHECK_THROWS_AS(model->deep_copy(), AssertionError);
}
