// distribute_module (fully_shard.h): parameters and buffers as DTensors on
// an SPMD mesh, registered in the sharded-tensor registry with their mesh.
#include <algorithm>
#include <stdexcept>

#include <torch/torch.h>

#include "ccts/distributed/device_mesh.h"
#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "fsdp_param_group.h"
#include "sharded_registry.h"

namespace ccts::fully_shard {

namespace {

// "Shard(d)" → d, "Replicate()" → nothing.
std::optional<int64_t> placement_shard_dim(const std::string& placement) {
  if (placement == "Replicate()") return std::nullopt;
  const std::string prefix = "Shard(";
  if (placement.rfind(prefix, 0) == 0 && placement.size() > prefix.size() + 1 && placement.back() == ')') {
    return std::stoll(placement.substr(prefix.size(), placement.size() - prefix.size() - 1));
  }
  throw std::invalid_argument("distribute_module: unknown placement '" + placement + "'");
}

// distribute_tensor(full, mesh, placements): this rank's local tensor,
// registered with its layout.
torch::Tensor distribute_tensor(const torch::Tensor& full, const std::shared_ptr<distributed::DeviceMesh>& mesh,
                                const std::vector<std::string>& placements) {
  if (static_cast<int>(placements.size()) != mesh->ndim()) {
    throw std::invalid_argument("distribute_module: " + std::to_string(placements.size()) +
                                " placements for a mesh of " + std::to_string(mesh->ndim()) + " dims");
  }
  int mesh_dim = -1;
  ShardRule rule;
  for (int i = 0; i < mesh->ndim(); ++i) {
    auto dim = placement_shard_dim(placements[static_cast<std::size_t>(i)]);
    if (!dim) continue;
    if (mesh_dim >= 0) throw Unsupported("distribute_module: the reference shards a tensor over one mesh dim at most");
    if (*dim < 0 || *dim >= full.dim()) throw std::invalid_argument("distribute_module: Shard(" + std::to_string(*dim) + ") of a " + std::to_string(full.dim()) + "-D tensor");
    mesh_dim = i;
    const int64_t world = mesh->group(i)->size();
    rule = ShardRule{*dim, full.size(*dim), (full.size(*dim) + world - 1) / world};
  }
  ShardedLayout layout{full.sizes().vec(), placements, mesh};
  torch::NoGradGuard no_grad;
  if (mesh_dim < 0) {
    torch::Tensor local = full.detach();
    c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> weak(local.getIntrusivePtr());
    detail::mark_sharded(local, std::move(layout), [weak] { return torch::Tensor(weak.lock()).detach(); },
                         [](const torch::Tensor& value) { return value; });
    return local;
  }
  auto group = mesh->group(mesh_dim);
  const int rank = group->rank();
  // A rank past the last row holds an empty shard.
  auto rows_of = [rule](const torch::Tensor& value, int r) {
    return value.narrow(rule.dim, std::min(rule.start_of(r), rule.rows), rule.rows_of(r));
  };
  torch::Tensor local = rows_of(full.detach(), rank).clone();
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> weak(local.getIntrusivePtr());
  detail::mark_sharded(
      local, std::move(layout),
      [weak, rule, group] {  // a collective: every rank's rows, padded to one chunk for all_gather
        torch::NoGradGuard no_grad;
        const torch::Tensor shard(weak.lock());
        std::vector<int64_t> sizes = shard.sizes().vec();
        sizes[rule.dim] = rule.chunk;
        torch::Tensor padded = torch::zeros(sizes, shard.options());
        padded.narrow(rule.dim, 0, shard.size(rule.dim)).copy_(shard);
        std::vector<torch::Tensor> rows;
        const auto gathered = group->all_gather(padded);
        for (int r = 0; r < static_cast<int>(gathered.size()); ++r) rows.push_back(gathered[r].narrow(rule.dim, 0, rule.rows_of(r)));
        return torch::cat(rows, rule.dim);
      },
      [rows_of, rank](const torch::Tensor& value) { return rows_of(value, rank); });
  return local;
}

}  // namespace

torch::Tensor from_local_replicated(const torch::Tensor& local, const std::shared_ptr<distributed::DeviceMesh>& mesh) {
  torch::Tensor view = local.view_as(local);
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> weak(view.getIntrusivePtr());
  detail::mark_sharded(view, ShardedLayout{view.sizes().vec(), std::vector<std::string>(static_cast<std::size_t>(mesh->ndim()), "Replicate()"), mesh},
                       [weak] { return torch::Tensor(weak.lock()).detach(); }, [](const torch::Tensor& value) { return value; });
  return view;
}

void distribute_module(nn::Module& module, const std::shared_ptr<distributed::DeviceMesh>& mesh,
                       const std::map<std::string, std::vector<std::string>>& placements) {
  const std::vector<std::string> replicated(static_cast<std::size_t>(mesh->ndim()), "Replicate()");
  for (const auto& [prefix, submodule] : module.named_modules()) {
    for (const auto& [name, param] : submodule->named_parameters("", false)) {
      const std::string fqn = prefix.empty() ? name : prefix + "." + name;
      auto it = placements.find(fqn);
      if (sharded_layout(param)) continue;  // already a DTensor
      torch::Tensor local = distribute_tensor(param, mesh, it == placements.end() ? replicated : it->second);
      local.set_requires_grad(param.requires_grad());
      *submodule->find_parameter(name) = local;
    }
    for (const auto& [name, buffer] : submodule->named_buffers("", false)) {
      if (!sharded_layout(buffer)) submodule->buffer(name) = distribute_tensor(buffer, mesh, replicated);
    }
  }
}

}  // namespace ccts::fully_shard
