#include "ccts/values/codec.h"

#include <cstring>
#include <map>
#include <stdexcept>

#include <torch/torch.h>

namespace ccts::values {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const std::map<std::string, torch::Dtype>& dtypes() {
  static const std::map<std::string, torch::Dtype> table = {
      {"float32", torch::kFloat32}, {"float64", torch::kFloat64}, {"float16", torch::kFloat16},
      {"bfloat16", torch::kBFloat16}, {"int64", torch::kInt64},   {"int32", torch::kInt32},
      {"bool", torch::kBool}};
  return table;
}

std::string dtype_name(torch::Dtype dtype) {
  for (const auto& [name, d] : dtypes()) {
    if (d == dtype) return name;
  }
  throw std::invalid_argument(std::string("tensor dtype ") + c10::toString(dtype) +
                              " has no encoding (float32, float64, float16, bfloat16, int64, "
                              "int32, bool)");
}

}  // namespace

torch::Dtype dtype_from_name(const std::string& name) {
  auto it = dtypes().find(name);
  if (it == dtypes().end()) throw std::invalid_argument("unknown dtype '" + name + "'");
  return it->second;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint8_t(bytes[i]) << 16) | (std::uint8_t(bytes[i + 1]) << 8) |
                            std::uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint8_t(bytes[i]) << 16;
    if (rest == 2) v |= std::uint8_t(bytes[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) throw std::invalid_argument("base64 text length is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    std::uint32_t v = 0;
    int pad = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      v <<= 6;
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
        continue;
      }
      const char* at = std::strchr(kAlphabet, c);
      if (c == '\0' || at == nullptr || pad > 0) {
        throw std::invalid_argument(std::string("invalid base64 character '") + c + "'");
      }
      v |= static_cast<std::uint32_t>(at - kAlphabet);
    }
    out.push_back(static_cast<char>((v >> 16) & 255));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 255));
    if (pad < 1) out.push_back(static_cast<char>(v & 255));
  }
  return out;
}

nlohmann::ordered_json encode_tensor(const torch::Tensor& tensor) {
  // Little-endian hosts only (x86-64, aarch64): the bytes are the storage's.
  const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
  const std::string bytes(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return {{"kind", "tensor"},
          {"dtype", dtype_name(t.scalar_type())},
          {"shape", t.sizes().vec()},
          {"data", base64_encode(bytes)}};
}

torch::Tensor decode_tensor(const nlohmann::ordered_json& observation) {
  if (!observation.is_object()) throw std::invalid_argument("tensor: expected an object");
  for (const char* field : {"dtype", "shape", "data"}) {
    if (!observation.contains(field)) throw std::invalid_argument(std::string("tensor.") + field + ": missing");
  }
  const auto& dtype_field = observation["dtype"];
  auto found = dtype_field.is_string() ? dtypes().find(dtype_field.get<std::string>()) : dtypes().end();
  if (found == dtypes().end()) throw std::invalid_argument("tensor.dtype: unknown dtype " + dtype_field.dump());
  std::vector<int64_t> shape;
  for (const auto& d : observation["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      throw std::invalid_argument("tensor.shape: expected non-negative integers");
    }
    shape.push_back(d.get<int64_t>());
  }
  if (!observation["data"].is_string()) throw std::invalid_argument("tensor.data: expected base64 text");
  std::string bytes;
  try {
    bytes = base64_decode(observation["data"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("tensor.data: ") + e.what());
  }
  torch::Tensor out = torch::empty(shape, found->second);
  if (bytes.size() != static_cast<std::size_t>(out.numel() * out.element_size())) {
    throw std::invalid_argument("tensor.data: " + std::to_string(bytes.size()) +
                                " bytes do not match shape and dtype (" +
                                std::to_string(out.numel() * out.element_size()) + " expected)");
  }
  std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
  return out;
}

}  // namespace ccts::values
