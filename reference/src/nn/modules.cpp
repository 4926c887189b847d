#include "ccts/nn/modules.h"

#include <cmath>
#include <stdexcept>

#include <torch/torch.h>

#include "ccts/compat.h"

namespace ccts::nn {

const torch::Tensor& single_tensor_argument(const Module& module, const Args& args,
                                            const Kwargs& kwargs) {
  if (args.size() != 1 || !kwargs.empty()) {
    throw std::invalid_argument(module.type_name() + ".forward() takes 1 positional argument but " +
                                std::to_string(args.size() + kwargs.size()) + " were given");
  }
  if (!args.front().is_tensor()) {
    throw std::invalid_argument(module.type_name() + ".forward() expects a Tensor, got " +
                                Value::kind_name(args.front().kind()));
  }
  return args.front().tensor();
}

namespace {

// LibTorch 1.13 computes float16 (and bfloat16 batch norm) in float32 (compat.h).
bool in_float32(const torch::Tensor& input, bool bfloat16_too) {
  if (compat::kCpuReducedPrecisionNorms || !input.is_cpu()) return false;
  return input.scalar_type() == torch::kHalf || (bfloat16_too && input.scalar_type() == torch::kBFloat16);
}

torch::Tensor float32_or_undefined(const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat) : t; }

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : Cloneable("Linear"), in_features_(in_features), out_features_(out_features), has_bias_(bias) {
  // reset_parameters(): kaiming_uniform_(a=sqrt(5)) is uniform(±1/sqrt(in)).
  const double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
  register_parameter("weight", torch::empty({out_features, in_features}).uniform_(-bound, bound));
  register_parameter("bias", bias ? torch::empty({out_features}).uniform_(-bound, bound)
                                  : torch::Tensor());
}

Value Linear::forward(const Args& args, const Kwargs& kwargs) {
  const torch::Tensor& input = single_tensor_argument(*this, args, kwargs);
  torch::Tensor* bias = find_parameter("bias");
  const torch::Tensor& weight = parameter("weight");
  // PyTorch 2.x's addmm message; LibTorch 1.13 words its own differently.
  if (input.scalar_type() != weight.scalar_type()) {
    throw std::runtime_error(std::string("mat1 and mat2 must have the same dtype, but got ") +
                             c10::toString(input.scalar_type()) + " and " + c10::toString(weight.scalar_type()));
  }
  const torch::Tensor b = bias ? *bias : torch::Tensor();
  if (in_float32(input, false)) {
    return torch::linear(input.to(torch::kFloat), weight.to(torch::kFloat), float32_or_undefined(b)).to(input.scalar_type());
  }
  return torch::linear(input, weight, b);
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features_) + ", out_features=" +
         std::to_string(out_features_) + ", bias=" + (has_bias_ ? "True" : "False");
}

LayerNorm::LayerNorm(int64_t features) : Cloneable("LayerNorm"), features_(features) {
  register_parameter("weight", torch::ones({features}));
  register_parameter("bias", torch::zeros({features}));
}

Value LayerNorm::forward(const Args& args, const Kwargs& kwargs) {
  const torch::Tensor& input = single_tensor_argument(*this, args, kwargs);
  const torch::Tensor& weight = parameter("weight");
  const torch::Tensor& bias = parameter("bias");
  if (in_float32(input, false)) {
    return torch::layer_norm(input.to(torch::kFloat), {features_}, weight.to(torch::kFloat), bias.to(torch::kFloat), 1e-5)
        .to(input.scalar_type());
  }
  return torch::layer_norm(input, {features_}, weight, bias, 1e-5);
}

std::string LayerNorm::extra_repr() const { return "(" + std::to_string(features_) + ",), eps=1e-05, elementwise_affine=True"; }

BatchNorm1d::BatchNorm1d(int64_t features) : Cloneable("BatchNorm1d"), features_(features) {
  register_parameter("weight", torch::ones({features}));
  register_parameter("bias", torch::zeros({features}));
  register_buffer("running_mean", torch::zeros({features}));
  register_buffer("running_var", torch::ones({features}));
  register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

Value BatchNorm1d::forward(const Args& args, const Kwargs& kwargs) {
  const torch::Tensor& input = single_tensor_argument(*this, args, kwargs);
  torch::Tensor& mean = buffer("running_mean");
  torch::Tensor& var = buffer("running_var");
  if (is_training()) {
    torch::NoGradGuard no_grad;
    buffer("num_batches_tracked").add_(1);
  }
  const torch::Tensor& weight = parameter("weight");
  const torch::Tensor& bias = parameter("bias");
  if (in_float32(input, true)) {
    // Statistics updated in float32 copies, then written back in their dtype.
    torch::Tensor mean32 = mean.to(torch::kFloat), var32 = var.to(torch::kFloat);
    torch::Tensor out = torch::batch_norm(input.to(torch::kFloat), weight.to(torch::kFloat), bias.to(torch::kFloat), mean32,
                                          var32, is_training(), 0.1, 1e-5, false);
    torch::NoGradGuard no_grad;
    mean.copy_(mean32);
    var.copy_(var32);
    return out.to(input.scalar_type());
  }
  return torch::batch_norm(input, weight, bias, mean, var, is_training(), 0.1, 1e-5, false);
}

std::string BatchNorm1d::extra_repr() const {
  return std::to_string(features_) + ", eps=1e-05, momentum=0.1, affine=True, track_running_stats=True";
}

Value ReLU::forward(const Args& args, const Kwargs& kwargs) {
  const torch::Tensor& input = single_tensor_argument(*this, args, kwargs);
  if (inplace_) {
    torch::Tensor out = input;
    return out.relu_();
  }
  return torch::relu(input);
}

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) : Cloneable("Sequential") {
  for (auto& module : modules) push_back(std::move(module));
}

void Sequential::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(size()), std::move(module));
}

std::shared_ptr<Module> Sequential::operator[](std::size_t index) const {
  return child(std::to_string(index));
}

Value Sequential::forward(const Args& args, const Kwargs& kwargs) {
  if (!kwargs.empty() || args.size() != 1) {
    throw std::invalid_argument("Sequential.forward() takes 1 positional argument but " +
                                std::to_string(args.size() + kwargs.size()) + " were given");
  }
  Value x = args.front();
  for (const auto& [name, module] : named_children()) x = (*module)(Args{x});
  return x;
}

ModuleList::ModuleList(std::vector<std::shared_ptr<Module>> modules) : Cloneable("ModuleList") {
  for (auto& module : modules) push_back(std::move(module));
}

void ModuleList::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(size()), std::move(module));
}

std::shared_ptr<Module> ModuleList::operator[](std::size_t index) const {
  return child(std::to_string(index));
}

std::string module_list_repr(const Module& module) {
  const auto& children = module.named_children();
  if (children.empty()) return module.type_name() + "()";
  std::string out = module.type_name() + "(";
  std::size_t start = 0;
  while (start < children.size()) {
    const std::string block = children[start].second->repr();
    std::size_t end = start;
    while (end + 1 < children.size() && children[end + 1].second->repr() == block) ++end;
    std::string line = end == start ? "(" + std::to_string(start) + "): " + block
                                    : "(" + std::to_string(start) + "-" + std::to_string(end) + "): " +
                                          std::to_string(end - start + 1) + " x " + block;
    std::string indented;
    for (char c : line) {
      indented.push_back(c);
      if (c == '\n') indented += "  ";
    }
    out += "\n  " + indented;
    start = end + 1;
  }
  return out + "\n)";
}

ModuleDict::ModuleDict(std::vector<std::pair<std::string, std::shared_ptr<Module>>> modules)
    : Cloneable("ModuleDict") {
  for (auto& [key, module] : modules) insert(key, std::move(module));
}

void ModuleDict::insert(const std::string& key, std::shared_ptr<Module> module) {
  register_module(key, std::move(module));
}

}  // namespace ccts::nn
