#pragma once
// A process group of one rank (FileStore) for unit tests of the distributed
// APIs, installed as the default group while a DefaultGroup lives.
#include <unistd.h>

#include <memory>
#include <string>

#include "ccts/distributed/process_group.h"

namespace ccts::testing {

inline std::shared_ptr<distributed::ProcessGroup> single_rank_group() {
  static auto group = [] {
    const std::string path = "/tmp/ccts_unit_group_" + std::to_string(getpid());
    unlink(path.c_str());
    return distributed::ProcessGroup::from_file_store(path, 0, 1);
  }();
  return group;
}

struct DefaultGroup {
  DefaultGroup() { distributed::set_default_process_group(single_rank_group()); }
  ~DefaultGroup() { distributed::set_default_process_group(nullptr); }
};

}  // namespace ccts::testing
