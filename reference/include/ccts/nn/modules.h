#pragma once
// Built-in modules with torch.nn's names, parameter layout and FQNs.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ccts/nn/module.h"

namespace ccts::nn {

// torch.nn.Linear: weight [out_features, in_features], optional bias
// [out_features], both initialised like PyTorch (uniform ±1/sqrt(in)).
class Linear : public Cloneable<Linear> {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Value forward(const Args& args, const Kwargs& kwargs) override;
  std::string extra_repr() const override;
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_;
  int64_t out_features_;
  bool has_bias_;
};

// torch.nn.ReLU (inplace=False by default).
class ReLU : public Cloneable<ReLU> {
 public:
  explicit ReLU(bool inplace = false) : Cloneable("ReLU"), inplace_(inplace) {}
  Value forward(const Args& args, const Kwargs& kwargs) override;
  std::string extra_repr() const override { return inplace_ ? "inplace=True" : ""; }

 private:
  bool inplace_;
};

// torch.nn.LayerNorm(features): over the last dim, eps 1e-5, weight ones and
// bias zeros.
class LayerNorm : public Cloneable<LayerNorm> {
 public:
  explicit LayerNorm(int64_t features);
  Value forward(const Args& args, const Kwargs& kwargs) override;
  std::string extra_repr() const override;

 private:
  int64_t features_;
};

// torch.nn.BatchNorm1d(features): weight ones, bias zeros, buffers
// running_mean (zeros), running_var (ones) and num_batches_tracked (int64);
// in training mode it normalises with the batch's statistics and updates the
// running ones (momentum 0.1), in eval mode it uses the running ones.
class BatchNorm1d : public Cloneable<BatchNorm1d> {
 public:
  explicit BatchNorm1d(int64_t features);
  Value forward(const Args& args, const Kwargs& kwargs) override;
  std::string extra_repr() const override;

 private:
  int64_t features_;
};

// torch.nn.Sequential: children "0", "1", ...; forward chains them.
class Sequential : public Cloneable<Sequential> {
 public:
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules = {});
  void push_back(std::shared_ptr<Module> module);
  std::shared_ptr<Module> operator[](std::size_t index) const;
  std::size_t size() const { return named_children().size(); }
  Value forward(const Args& args, const Kwargs& kwargs) override;
};

// PyTorch's ModuleList.__repr__ (subclasses inherit it): runs of equal
// children as "(0-1): 2 x ...".
std::string module_list_repr(const Module& module);

// torch.nn.ModuleList: children "0", "1", ...; no forward.
class ModuleList : public Cloneable<ModuleList> {
 public:
  explicit ModuleList(std::vector<std::shared_ptr<Module>> modules = {});
  void push_back(std::shared_ptr<Module> module);
  std::shared_ptr<Module> operator[](std::size_t index) const;
  std::size_t size() const { return named_children().size(); }
  std::string repr() const override { return module_list_repr(*this); }
  bool is_container() const override { return true; }
  bool defines_forward() const override { return false; }
};

// torch.nn.ModuleDict: children keyed by name in insertion order; no forward.
class ModuleDict : public Cloneable<ModuleDict> {
 public:
  explicit ModuleDict(std::vector<std::pair<std::string, std::shared_ptr<Module>>> modules = {});
  void insert(const std::string& key, std::shared_ptr<Module> module);
  std::shared_ptr<Module> operator[](const std::string& key) const { return child(key); }
  bool is_container() const override { return true; }
  bool defines_forward() const override { return false; }
};

// The single tensor argument of a one-input module (Linear, ReLU, ...), with
// PyTorch-like errors for anything else.
const torch::Tensor& single_tensor_argument(const Module& module, const Args& args,
                                            const Kwargs& kwargs);

}  // namespace ccts::nn
