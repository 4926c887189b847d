#pragma once
// A DeviceMesh (torch.distributed.device_mesh) on c10d subgroups: the world's
// ranks laid out row-major in an n-D shape, with this rank's group along each
// dim (the ranks that share every other coordinate). fully_shard takes one:
// 1-D shards over its ranks, 2-D (replicate, shard) is HSDP.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ccts/distributed/process_group.h"

namespace ccts::distributed {

class DeviceMesh {
 public:
  // init_device_mesh(device_type, shape, mesh_dim_names=names) over `world`;
  // every rank calls it, in the same order. std::invalid_argument when the
  // shape does not hold the world or names do not match it.
  static std::shared_ptr<DeviceMesh> init(const std::shared_ptr<ProcessGroup>& world, std::vector<int64_t> shape,
                                          std::vector<std::string> names = {}, std::string device_type = "cpu");

  // DeviceMesh.from_group(groups, device_type, mesh=arange(world).view(shape),
  // mesh_dim_names=names): a mesh on groups made elsewhere, `groups[d]` being
  // this rank's group along dim d. std::invalid_argument when they do not fit
  // the shape.
  static std::shared_ptr<DeviceMesh> from_group(std::vector<std::shared_ptr<ProcessGroup>> groups,
                                                std::vector<int64_t> shape, std::vector<std::string> names = {},
                                                std::string device_type = "cpu");
  // The ranks of each group along `dim` of a row-major mesh of `shape` (the
  // partition new_group_of takes), groups ordered by the other coordinates.
  static std::vector<std::vector<int>> groups_along(const std::vector<int64_t>& shape, std::size_t dim);

  int ndim() const { return static_cast<int>(shape_.size()); }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::string& device_type() const { return device_type_; }
  // This rank's group along `dim`.
  const std::shared_ptr<ProcessGroup>& group(int dim) const { return groups_.at(static_cast<std::size_t>(dim)); }
  // mesh[name]: the 1-D mesh of this rank's group along that dim.
  std::shared_ptr<DeviceMesh> sub(const std::string& name) const;
  // PyTorch's repr: DeviceMesh((1, 2, 2), 'cpu', stride=((), 2, 1)), or with
  // names DeviceMesh((replicate=2, shard=2), 'cpu', stride=(2, 1)).
  std::string repr() const;

 private:
  DeviceMesh(std::vector<int64_t> shape, std::vector<std::string> names, std::string device_type,
             std::vector<std::shared_ptr<ProcessGroup>> groups);

  std::vector<int64_t> shape_;
  std::vector<std::string> names_;
  std::string device_type_;
  std::vector<std::shared_ptr<ProcessGroup>> groups_;
};

}  // namespace ccts::distributed
