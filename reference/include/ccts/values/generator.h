#pragma once
// The portable value generator (spec/values.md): a counter-based integer
// hash turned into float32, so that every implementation builds bit-identical
// models and batches without sharing an RNG.
#include <cstdint>
#include <string_view>

#include <torch/types.h>

namespace ccts::values {

// FNV-1a, 64 bit: names (FQNs) to streams.
std::uint64_t fnv1a64(std::string_view text);
// SplitMix64's finalizer.
std::uint64_t mix64(std::uint64_t x);
// mix64(mix64(mix64(seed + G) ^ (stream + G)) ^ (index + G)), G = 0x9E3779B97F4A7C15.
std::uint64_t counter_hash(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);
// The top 24 bits of counter_hash as a double in [0, 1): (h >> 40) * 2^-24.
double unit_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);

// Element i (row-major) = float32(low + (high - low) * unit_uniform(seed, stream, i)).
torch::Tensor uniform(c10::IntArrayRef shape, double low, double high, std::uint64_t seed,
                      std::uint64_t stream);
// Element i = float32(sum over k < 12 of unit_uniform(seed, stream, 12 i + k) - 6).
torch::Tensor normal(c10::IntArrayRef shape, std::uint64_t seed, std::uint64_t stream);

}  // namespace ccts::values
