// replicate (DDP as a composable API) on a one-rank gloo group, with the
// installed ccts::replicate: the replicated model's gradients must equal those
// of an untouched copy.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ccts/distributed/process_group.h"
#include "ccts/nn/modules.h"
#include "ccts/replicate/replicate.h"

int main() {
  using namespace ccts;
  const auto store = std::filesystem::temp_directory_path() /
                     ("ccts_consumer_" + std::to_string(getpid()));
  std::filesystem::remove(store);
  distributed::set_default_process_group(distributed::ProcessGroup::from_file_store(store, 0, 1));

  auto model = std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(3, 4), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(4, 2)});
  auto local = model->deep_copy();
  replicate::replicate(model);

  const torch::Tensor x = torch::randn({5, 3});
  (*model)(x).tensor().pow(2).sum().backward();
  (*local)(x).tensor().pow(2).sum().backward();
  const auto replicated = model->named_parameters();
  const auto reference = local->named_parameters();
  bool same = replicated.size() == reference.size() && replicated.size() == 4;
  for (std::size_t i = 0; same && i < replicated.size(); ++i)
    same = torch::equal(replicated[i].second.grad(), reference[i].second.grad());
  const auto state = replicate::replicate_state(*model);

  std::cout << "ccts-consumer: replicate on 1 rank of gloo: " << model->type_name() << ", "
            << (state ? state->param_names().size() : 0) << " parameters synchronised, gradients "
            << (same ? "equal" : "DIFFER") << '\n';
  distributed::set_default_process_group(nullptr);
  std::filesystem::remove(store);
  return same && state && model->type_name() == "DDPSequential" ? 0 : 1;
}
