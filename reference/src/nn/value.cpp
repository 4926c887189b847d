#include "ccts/nn/value.h"

#include <stdexcept>

namespace ccts::nn {

namespace {
[[noreturn]] void wrong_kind(const char* wanted, Value::Kind actual) {
  throw std::invalid_argument(std::string("expected a ") + wanted + ", got " +
                              Value::kind_name(actual));
}
}  // namespace

Value::Value(torch::Tensor tensor) : kind_(Kind::Tensor), tensor_(std::move(tensor)) {}
Value::Value(std::int64_t number) : kind_(Kind::Int), int_(number) {}
Value::Value(double number) : kind_(Kind::Double), double_(number) {}
Value::Value(bool flag) : kind_(Kind::Bool), int_(flag ? 1 : 0) {}
Value::Value(std::string text) : kind_(Kind::String), string_(std::move(text)) {}

Value Value::tuple(Items items) {
  Value v;
  v.kind_ = Kind::Tuple;
  v.items_ = std::make_shared<const Items>(std::move(items));
  return v;
}

Value Value::list(Items items) {
  Value v = tuple(std::move(items));
  v.kind_ = Kind::List;
  return v;
}

Value Value::dict(DictItems items) {
  Value v;
  v.kind_ = Kind::Dict;
  v.dict_items_ = std::make_shared<const DictItems>(std::move(items));
  return v;
}

const torch::Tensor& Value::tensor() const {
  if (kind_ != Kind::Tensor) wrong_kind("tensor", kind_);
  return tensor_;
}

const Value::Items& Value::items() const {
  if (!is_sequence()) wrong_kind("tuple or list", kind_);
  return *items_;
}

const Value::DictItems& Value::dict_items() const {
  if (kind_ != Kind::Dict) wrong_kind("dict", kind_);
  return *dict_items_;
}

std::int64_t Value::to_int() const {
  if (kind_ != Kind::Int) wrong_kind("int", kind_);
  return int_;
}

double Value::to_double() const {
  if (kind_ == Kind::Int) return static_cast<double>(int_);
  if (kind_ != Kind::Double) wrong_kind("float", kind_);
  return double_;
}

bool Value::to_bool() const {
  if (kind_ != Kind::Bool) wrong_kind("bool", kind_);
  return int_ != 0;
}

const std::string& Value::to_string() const {
  if (kind_ != Kind::String) wrong_kind("str", kind_);
  return string_;
}

const Value& Value::at(std::int64_t index) const {
  const Items& all = items();
  const auto size = static_cast<std::int64_t>(all.size());
  const std::int64_t i = index < 0 ? index + size : index;
  if (i < 0 || i >= size) {
    throw std::out_of_range("index " + std::to_string(index) + " out of range for a " +
                            kind_name(kind_) + " of length " + std::to_string(size));
  }
  return all[static_cast<std::size_t>(i)];
}

const Value& Value::at(const std::string& key) const {
  for (const auto& [name, value] : dict_items()) {
    if (name == key) return value;
  }
  throw std::out_of_range("KeyError: '" + key + "'");
}

std::vector<torch::Tensor> Value::tensors() const {
  std::vector<torch::Tensor> out;
  std::function<void(const Value&)> visit = [&](const Value& v) {
    switch (v.kind_) {
      case Kind::Tensor: out.push_back(v.tensor_); break;
      case Kind::Tuple:
      case Kind::List:
        for (const Value& item : *v.items_) visit(item);
        break;
      case Kind::Dict:
        for (const auto& item : *v.dict_items_) visit(item.second);
        break;
      default: break;
    }
  };
  visit(*this);
  return out;
}

Value Value::map_tensors(const std::function<torch::Tensor(const torch::Tensor&)>& fn) const {
  switch (kind_) {
    case Kind::Tensor: return Value(fn(tensor_));
    case Kind::Tuple:
    case Kind::List: {
      Items mapped;
      mapped.reserve(items_->size());
      for (const Value& item : *items_) mapped.push_back(item.map_tensors(fn));
      return kind_ == Kind::Tuple ? tuple(std::move(mapped)) : list(std::move(mapped));
    }
    case Kind::Dict: {
      DictItems mapped;
      mapped.reserve(dict_items_->size());
      for (const auto& [key, item] : *dict_items_) mapped.emplace_back(key, item.map_tensors(fn));
      return dict(std::move(mapped));
    }
    default: return *this;
  }
}

const char* Value::kind_name(Kind kind) {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Tensor: return "Tensor";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Int: return "int";
    case Kind::Double: return "float";
    case Kind::Bool: return "bool";
    case Kind::String: return "str";
  }
  return "?";
}

}  // namespace ccts::nn
