#pragma once
// Tensor observations with exact bits (spec/ADAPTERS.md, "Tensors"):
// {"kind":"tensor","dtype","shape","data": base64 of little-endian row-major bytes}.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace ccts::values {

std::string base64_encode(std::string_view bytes);
// Throws std::invalid_argument on characters outside the standard alphabet.
std::string base64_decode(std::string_view text);

// A dtype by its encoding name ("float32", "bfloat16", ...); throws
// std::invalid_argument for any other name.
torch::Dtype dtype_from_name(const std::string& name);

nlohmann::ordered_json encode_tensor(const torch::Tensor& tensor);
// Throws std::invalid_argument naming the offending field.
torch::Tensor decode_tensor(const nlohmann::ordered_json& observation);

}  // namespace ccts::values
