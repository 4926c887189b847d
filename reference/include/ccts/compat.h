#pragma once
// The differences between LibTorch 1.13 (Debian) and 2.x that the reference
// meets, in one place; no other file tests TORCH_VERSION_*.
//
//  * 1.13: c10d::ProcessGroupGloo and c10d::ProcessGroupNCCL derive from
//    c10d::ProcessGroup. 2.x: they derive from c10d::Backend, and
//    c10d::ProcessGroup became a dispatching wrapper around backends. The
//    collectives the reference uses (broadcast, allreduce, allgather,
//    reduce_scatter, barrier) have the same signatures on both, so the
//    reference holds the backend itself: compat::NativeGroup.
//  * Gloo has no reduce_scatter before PyTorch 2.8 (it throws "ProcessGroupGloo
//    does not support reduce_scatter"). ProcessGroup::reduce_scatter on Gloo
//    is an all-reduce of the whole input followed by this rank's chunk on
//    every release (process_group.cpp says why it does not use the native
//    one from 2.8).
//  * Gloo in 1.13 reduces no bfloat16 ("Invalid scalar type"); 2.13's does.
//    Without kGlooBFloat16Reduce, ProcessGroup::reduce_scatter sums bfloat16
//    in float32 and rounds the result back (within bfloat16's rounding of
//    Gloo's own sum). The releases between were not measured.
//  * LibTorch 1.13's CPU kernels have no float16 addmm, layer_norm or
//    batch_norm ("not implemented for 'Half'"), and its batch_norm takes no
//    bfloat16 input with float32 running statistics; 2.13's do both. Without
//    kCpuReducedPrecisionNorms, the reference's Linear, LayerNorm and
//    BatchNorm1d compute such inputs in float32 and round the result back
//    (within the dtype's rounding of the native kernels).
//  * Autograd nodes: 1.13 holds them in std::shared_ptr; 2.x (since 2.10) in
//    c10::intrusive_ptr. compat::NodePtr is whatever Tensor::grad_fn() returns.
//  * NCCL exists only in builds of LibTorch with CUDA, which define
//    USE_C10D_NCCL for their users (as every build with Gloo defines
//    USE_C10D_GLOO); kNccl says whether this build has it. (Only
//    src/distributed/ includes the backends' headers; NCCL's need CUDA's.)
#include <torch/version.h>

#include <type_traits>
#include <utility>

#include <ATen/core/TensorBody.h>

#include <torch/csrc/distributed/c10d/Work.hpp>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

namespace ccts::compat {

using NativeWork = c10d::Work;

#if TORCH_VERSION_MAJOR >= 2
using NativeGroup = c10d::Backend;
#else
using NativeGroup = c10d::ProcessGroup;
#endif

using NodePtr = std::decay_t<decltype(std::declval<const at::Tensor&>().grad_fn())>;

inline constexpr bool kGlooBFloat16Reduce = TORCH_VERSION_MAJOR >= 2;

inline constexpr bool kCpuReducedPrecisionNorms = TORCH_VERSION_MAJOR >= 2;

#ifdef USE_C10D_NCCL
inline constexpr bool kNccl = true;
#else
inline constexpr bool kNccl = false;
#endif

}  // namespace ccts::compat
