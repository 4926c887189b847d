#include "ccts/values/generator.h"

#include <vector>

#include <torch/torch.h>

namespace ccts::values {

namespace {
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

template <class Fn>
torch::Tensor fill(c10::IntArrayRef shape, Fn element) {
  torch::Tensor out = torch::empty(shape, torch::kFloat32);
  float* data = out.data_ptr<float>();
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) data[i] = element(static_cast<std::uint64_t>(i));
  return out;
}
}  // namespace

std::uint64_t fnv1a64(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint64_t counter_hash(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return mix64(mix64(mix64(seed + kGolden) ^ (stream + kGolden)) ^ (index + kGolden));
}

double unit_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return static_cast<double>(counter_hash(seed, stream, index) >> 40) * (1.0 / 16777216.0);
}

torch::Tensor uniform(c10::IntArrayRef shape, double low, double high, std::uint64_t seed,
                      std::uint64_t stream) {
  return fill(shape, [&](std::uint64_t i) {
    return static_cast<float>(low + (high - low) * unit_uniform(seed, stream, i));
  });
}

torch::Tensor normal(c10::IntArrayRef shape, std::uint64_t seed, std::uint64_t stream) {
  return fill(shape, [&](std::uint64_t i) {
    double sum = 0.0;
    for (std::uint64_t k = 0; k < 12; ++k) sum += unit_uniform(seed, stream, 12 * i + k);
    return static_cast<float>(sum - 6.0);
  });
}

}  // namespace ccts::values
