#include "ccts/nn/modules.h"

#include <cmath>
#include <stdexcept>

#include <torch/torch.h>

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
  return torch::linear(input, weight, bias ? *bias : torch::Tensor());
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features_) + ", out_features=" +
         std::to_string(out_features_) + ", bias=" + (has_bias_ ? "True" : "False");
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
