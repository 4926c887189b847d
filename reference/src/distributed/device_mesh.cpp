#include "ccts/distributed/device_mesh.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "ccts/mutants.h"
#include "ccts/python_repr.h"

namespace ccts::distributed {

namespace {

// Ranks are laid out row-major: rank = sum of coordinate[d] * stride[d].
std::vector<int64_t> row_major_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> stride(shape.size(), 1);
  for (std::size_t d = shape.size() - 1; d > 0; --d) stride[d - 1] = stride[d] * shape[d];
  return stride;
}

}  // namespace

std::vector<std::vector<int>> DeviceMesh::groups_along(const std::vector<int64_t>& shape, std::size_t dim) {
  const int64_t world = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
  const std::vector<int64_t> stride = row_major_strides(shape);
  std::vector<std::vector<int>> groups;
  std::vector<int64_t> key_of;  // each group's rank with coordinate 0 on `dim`
  for (int64_t r = 0; r < world; ++r) {
    const int64_t base = r - ((r / stride[dim]) % shape[dim]) * stride[dim];
    auto it = std::find(key_of.begin(), key_of.end(), base);
    if (it == key_of.end()) {
      key_of.push_back(base);
      groups.emplace_back();
      it = key_of.end() - 1;
    }
    groups[static_cast<std::size_t>(it - key_of.begin())].push_back(static_cast<int>(r));
  }
  return groups;
}

DeviceMesh::DeviceMesh(std::vector<int64_t> shape, std::vector<std::string> names, std::string device_type,
                       std::vector<std::shared_ptr<ProcessGroup>> groups)
    : shape_(std::move(shape)), names_(std::move(names)), device_type_(std::move(device_type)), groups_(std::move(groups)) {}

std::shared_ptr<DeviceMesh> DeviceMesh::init(const std::shared_ptr<ProcessGroup>& world, std::vector<int64_t> shape,
                                             std::vector<std::string> names, std::string device_type) {
  if (shape.empty()) throw std::invalid_argument("init_device_mesh: the mesh shape is empty");
  const int64_t size = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
  if (size != world->size()) {
    throw std::invalid_argument("init_device_mesh: a mesh of shape " + std::to_string(size) + " ranks over a world of " +
                                std::to_string(world->size()));
  }
  if (!names.empty() && names.size() != shape.size()) {
    throw std::invalid_argument("init_device_mesh: mesh_dim_names must have one name per dim of the mesh shape");
  }
  std::vector<std::shared_ptr<ProcessGroup>> groups;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    // A 1-D mesh over the whole world is the world itself, as in PyTorch.
    groups.push_back(shape.size() == 1 ? world : world->new_group_of(groups_along(shape, d)));
  }
  return std::shared_ptr<DeviceMesh>(new DeviceMesh(std::move(shape), std::move(names), std::move(device_type),
                                                    std::move(groups)));
}

std::shared_ptr<DeviceMesh> DeviceMesh::from_group(std::vector<std::shared_ptr<ProcessGroup>> groups,
                                                   std::vector<int64_t> shape, std::vector<std::string> names,
                                                   std::string device_type) {
  if (groups.size() != shape.size()) {
    throw std::invalid_argument("DeviceMesh.from_group: " + std::to_string(groups.size()) + " groups for a mesh of " +
                                std::to_string(shape.size()) + " dims");
  }
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (groups[d]->size() != shape[d]) {
      throw std::invalid_argument("DeviceMesh.from_group: the group of dim " + std::to_string(d) + " has " +
                                  std::to_string(groups[d]->size()) + " ranks, the mesh " + std::to_string(shape[d]));
    }
  }
  if (!names.empty() && names.size() != shape.size()) {
    throw std::invalid_argument("DeviceMesh.from_group: mesh_dim_names must have one name per dim of the mesh");
  }
  if (mutant("from_group_dims_reversed")) std::reverse(groups.begin(), groups.end());
  return std::shared_ptr<DeviceMesh>(new DeviceMesh(std::move(shape), std::move(names), std::move(device_type),
                                                    std::move(groups)));
}

std::shared_ptr<DeviceMesh> DeviceMesh::sub(const std::string& name) const {
  auto it = std::find(names_.begin(), names_.end(), name);
  if (it == names_.end()) throw std::invalid_argument("Mesh dimension '" + name + "' does not exist.");
  const auto dim = static_cast<std::size_t>(it - names_.begin());
  if (mutant("sub_mesh_is_world")) return init(default_process_group(), {default_process_group()->size()}, {name}, device_type_);
  return std::shared_ptr<DeviceMesh>(new DeviceMesh({shape_[dim]}, {name}, device_type_, {groups_[dim]}));
}

std::string DeviceMesh::repr() const {
  std::vector<std::string> sizes, strides;
  const std::vector<int64_t> row_major = row_major_strides(shape_);
  for (std::size_t d = 0; d < shape_.size(); ++d) {
    const std::string size = std::to_string(shape_[d]);
    sizes.push_back(names_.empty() ? size : names_[d] + "=" + size);
    // PyTorch's layout keeps no stride for a dim of size 1.
    strides.push_back(shape_[d] == 1 ? "()" : std::to_string(row_major[d]));
  }
  return "DeviceMesh(" + python_tuple(sizes) + ", '" + device_type_ + "', stride=" + python_tuple(strides) + ")";
}

}  // namespace ccts::distributed
