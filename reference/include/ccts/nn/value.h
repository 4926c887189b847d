#pragma once
// What flows through a module's forward: PyTorch passes arbitrary Python
// objects; the reference supports the ones the suite's fixtures use — none,
// tensors, tuples, lists, string-keyed dicts (insertion-ordered) and scalars.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace ccts::nn {

class Value {
 public:
  enum class Kind { None, Tensor, Tuple, List, Dict, Int, Double, Bool, String };
  using Items = std::vector<Value>;
  using DictItems = std::vector<std::pair<std::string, Value>>;

  Value() = default;  // none
  Value(torch::Tensor tensor);  // NOLINT: implicit, like Python's duck typing
  Value(std::int64_t number);
  Value(int number) : Value(static_cast<std::int64_t>(number)) {}
  Value(double number);
  Value(bool flag);
  Value(std::string text);
  Value(const char* text) : Value(std::string(text)) {}

  static Value tuple(Items items);
  static Value list(Items items);
  static Value dict(DictItems items);

  Kind kind() const { return kind_; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_tensor() const { return kind_ == Kind::Tensor; }
  bool is_sequence() const { return kind_ == Kind::Tuple || kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }

  // Typed access; each throws std::invalid_argument naming the actual kind.
  const torch::Tensor& tensor() const;
  const Items& items() const;
  const DictItems& dict_items() const;
  std::int64_t to_int() const;
  double to_double() const;
  bool to_bool() const;
  const std::string& to_string() const;

  // Python's `value[i]` for tuples/lists and `value[key]` for dicts.
  const Value& at(std::int64_t index) const;
  const Value& at(const std::string& key) const;

  // Every tensor inside, depth first in order (torch.utils._pytree order).
  std::vector<torch::Tensor> tensors() const;
  // A copy with each tensor replaced by fn(tensor); structure is kept.
  Value map_tensors(const std::function<torch::Tensor(const torch::Tensor&)>& fn) const;

  static const char* kind_name(Kind kind);

 private:
  Kind kind_ = Kind::None;
  torch::Tensor tensor_;
  std::int64_t int_ = 0;
  double double_ = 0.0;
  std::string string_;
  std::shared_ptr<const Items> items_;
  std::shared_ptr<const DictItems> dict_items_;
};

// A forward call's positional and keyword arguments.
using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;

}  // namespace ccts::nn
