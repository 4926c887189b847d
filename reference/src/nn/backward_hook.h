#pragma once
// Full backward hooks of one module call (torch.utils.hooks.BackwardHook):
// an identity autograd function wraps the call's top-level input tensors and
// its output tensors; a pre-hook on the output node sees grad_output, a hook
// on the input node sees grad_input once all of them are computed.
#include <memory>
#include <optional>
#include <vector>

#include "ccts/nn/hooks.h"
#include "ccts/nn/value.h"

namespace ccts::nn {

class BackwardHookState : public std::enable_shared_from_this<BackwardHookState> {
 public:
  BackwardHookState(Module& module, std::vector<BackwardHook> user_hooks,
                    std::vector<BackwardPreHook> user_pre_hooks);

  Args setup_input_hook(Args args);
  Value setup_output_hook(Value result);

 private:
  TensorList pack_with_none(const std::vector<std::size_t>& indices, const TensorList& tensors,
                            std::size_t size) const;
  TensorList on_grad_output(const TensorList& grads);
  TensorList on_grad_input(const TensorList& grad_input);

  Module* module_;
  std::shared_ptr<Module> keep_alive_;  // PyTorch's BackwardHook holds the module too
  std::vector<BackwardHook> user_hooks_;
  std::vector<BackwardPreHook> user_pre_hooks_;
  std::optional<TensorList> grad_outputs_;
  std::size_t n_inputs_ = 0;
  std::size_t n_outputs_ = 0;
  std::optional<std::vector<std::size_t>> input_tensors_index_;
  std::optional<std::vector<std::size_t>> output_tensors_index_;
};

}  // namespace ccts::nn
