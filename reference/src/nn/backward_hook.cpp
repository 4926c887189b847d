#include "backward_hook.h"

#include "ccts/compat.h"

#include <functional>
#include <stdexcept>
#include <string>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/function_hook.h>

#include "ccts/nn/module.h"

namespace ccts::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// torch.nn.modules._functions.BackwardHookFunction: identity whose node
// carries the hooks; outputs of inputs without grad are non-differentiable.
struct BackwardHookFunction : public torch::autograd::Function<BackwardHookFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs) {
    variable_list no_grad;
    for (const auto& t : inputs) {
      if (!t.requires_grad()) no_grad.push_back(t);
    }
    ctx->mark_non_differentiable(no_grad);
    return inputs.vec();
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return grads; }
};

struct LambdaPreHook : public torch::autograd::FunctionPreHook {
  explicit LambdaPreHook(std::function<variable_list(const variable_list&)> fn)
      : fn(std::move(fn)) {}
  variable_list operator()(const variable_list& grads) override { return fn(grads); }
  std::function<variable_list(const variable_list&)> fn;
};

struct LambdaPostHook : public torch::autograd::FunctionPostHook {
  explicit LambdaPostHook(std::function<variable_list(const variable_list&)> fn)
      : fn(std::move(fn)) {}
  variable_list operator()(const variable_list& grad_inputs,
                           const variable_list& /*grad_outputs*/) override {
    return fn(grad_inputs);
  }
  std::function<variable_list(const variable_list&)> fn;
};

// BackwardHook._apply_on_tensors over the top-level items of a call: wraps
// them in one BackwardHookFunction and hands its node to `attach`. Returns the
// positions of the tensors, or nothing when no input needs grad.
std::optional<std::vector<std::size_t>> apply_on_tensors(
    std::vector<Value>& items,
    const std::function<void(const compat::NodePtr&)>& attach) {
  std::vector<std::size_t> index;
  variable_list tensors;
  bool requires_grad = false;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (items[i].is_tensor()) {
      index.push_back(i);
      tensors.push_back(items[i].tensor());
      requires_grad = requires_grad || items[i].tensor().requires_grad();
    }
  }
  if (!(requires_grad && torch::GradMode::is_enabled())) return std::nullopt;
  // A TensorList, not a vector: only that form counts as differentiable input.
  variable_list wrapped = BackwardHookFunction::apply(at::TensorList(tensors));
  compat::NodePtr node;
  for (const auto& t : wrapped) {
    if (t.grad_fn()) {
      node = t.grad_fn();
      break;
    }
  }
  if (!node) {
    throw std::runtime_error(
        "Error while setting up backward hooks. Please open an issue with a code sample to "
        "reproduce this.");
  }
  attach(node);
  for (std::size_t k = 0; k < index.size(); ++k) items[index[k]] = Value(wrapped[k]);
  return index;
}

}  // namespace

BackwardHookState::BackwardHookState(Module& module, std::vector<BackwardHook> user_hooks,
                                     std::vector<BackwardPreHook> user_pre_hooks)
    : module_(&module),
      keep_alive_(module.weak_from_this().lock()),
      user_hooks_(std::move(user_hooks)),
      user_pre_hooks_(std::move(user_pre_hooks)) {}

TensorList BackwardHookState::pack_with_none(const std::vector<std::size_t>& indices,
                                             const TensorList& tensors, std::size_t size) const {
  TensorList packed(size);
  for (std::size_t k = 0; k < indices.size() && k < tensors.size(); ++k) {
    packed[indices[k]] = tensors[k];
  }
  return packed;
}

Args BackwardHookState::setup_input_hook(Args args) {
  // The nodes' hooks own the state: it lives as long as the graph does.
  auto self = shared_from_this();
  input_tensors_index_ = apply_on_tensors(args, [self](const auto& node) {
    node->add_post_hook(std::make_unique<LambdaPostHook>(
        [self](const variable_list& grads) { return self->on_grad_input(grads); }));
  });
  n_inputs_ = args.size();
  return args;
}

Value BackwardHookState::setup_output_hook(Value result) {
  const bool is_tuple = result.kind() == Value::Kind::Tuple;
  std::vector<Value> items = is_tuple ? result.items() : std::vector<Value>{result};
  auto self = shared_from_this();
  output_tensors_index_ = apply_on_tensors(items, [self](const auto& node) {
    node->add_pre_hook(std::make_unique<LambdaPreHook>(
        [self](const variable_list& grads) { return self->on_grad_output(grads); }));
  });
  n_outputs_ = items.size();
  return is_tuple ? Value::tuple(std::move(items)) : items.front();
}

TensorList BackwardHookState::on_grad_output(const TensorList& grads) {
  grad_outputs_ = pack_with_none(*output_tensors_index_, grads, n_outputs_);
  for (const auto& pre_hook : user_pre_hooks_) {
    std::optional<TensorList> replaced = pre_hook(*module_, *grad_outputs_);
    if (!replaced) continue;
    if (replaced->size() != grad_outputs_->size()) {
      throw std::runtime_error("Backward pre hook returned an invalid number of grad_output, got " +
                               std::to_string(replaced->size()) + ", but expected " +
                               std::to_string(grad_outputs_->size()));
    }
    grad_outputs_ = std::move(*replaced);
  }
  const TensorList local_grad_outputs = *grad_outputs_;
  // No input needs grad: the input node never runs, so the full backward
  // hooks fire here with grad_input all None.
  if (!input_tensors_index_) {
    const TensorList grad_inputs(n_inputs_);
    for (const auto& hook : user_hooks_) {
      std::optional<TensorList> res = hook(*module_, grad_inputs, *grad_outputs_);
      bool all_none = true;
      if (res) {
        for (const auto& t : *res) all_none = all_none && !t.defined();
      }
      if (!all_none) {
        throw std::runtime_error(
            "Backward hook for Modules where no input requires gradient should always return "
            "None or None for all gradients.");
      }
    }
    grad_outputs_.reset();
  }
  TensorList out;
  for (std::size_t i : *output_tensors_index_) out.push_back(local_grad_outputs[i]);
  return out;
}

TensorList BackwardHookState::on_grad_input(const TensorList& grad_input) {
  // Gradient reached the inputs without passing through the outputs (e.g.
  // double backward): PyTorch calls no hook.
  if (!grad_outputs_) return grad_input;
  TensorList res = pack_with_none(*input_tensors_index_, grad_input, n_inputs_);
  for (const auto& hook : user_hooks_) {
    std::optional<TensorList> out = hook(*module_, res, *grad_outputs_);
    if (!out) continue;
    if (out->size() != res.size()) {
      throw std::runtime_error("Backward hook returned an invalid number of grad_input, got " +
                               std::to_string(out->size()) + ", but expected " +
                               std::to_string(res.size()));
    }
    res = std::move(*out);
  }
  grad_outputs_.reset();
  TensorList unpacked;
  for (std::size_t i : *input_tensors_index_) unpacked.push_back(res[i]);
  return unpacked;
}

}  // namespace ccts::nn
