#pragma once
// The reference adapter's session and case interpreter (spec/ADAPTERS.md,
// spec/CASES.md): a rank's process group lives as long as the session; each
// case runs in a fresh scope so no model, hook or tracker outlives it.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace ccts::distributed {
class ProcessGroup;
}

namespace ccts::adapter {

using json = nlohmann::ordered_json;

class Session {
 public:
  Session(int rank, int world_size, std::string backend, std::string device);
  ~Session();

  // Fields of the adapter's `hello` reply (name, version, capabilities, ...).
  json hello() const;
  // Runs one `run` message's case; returns the `result` message.
  json run(const json& message);

 private:
  bool serves_request() const;

  int rank_;
  int world_size_;
  std::string backend_;
  std::string device_;
  std::shared_ptr<distributed::ProcessGroup> process_group_;
};

}  // namespace ccts::adapter
