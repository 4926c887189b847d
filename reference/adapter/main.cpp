// ccts-adapter: the reference implementation's adapter (spec/ADAPTERS.md).
//
// One process per rank, started by the runner with torchrun's environment.
// stdin/stdout carry JSON Lines (hello, run, bye); stdout is reserved for the
// protocol, so everything else goes to stderr. What each line means is the
// intake's job (intake.h).
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "intake.h"

namespace {

using ccts::adapter::json;

void send(const json& message) {
  std::cout << message.dump(-1, ' ', false, json::error_handler_t::replace) << '\n' << std::flush;
}

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoi(value) : fallback;
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  ccts::adapter::Intake intake([](const std::string& backend, const std::string& device) {
    return std::make_shared<ccts::adapter::Session>(env_int("RANK", 0), env_int("WORLD_SIZE", 1), backend,
                                                    device);
  });
  std::string line;
  while (std::getline(std::cin, line)) {
    const auto reply = intake.handle(line);
    if (!reply) continue;
    send(reply->message);
    if (reply->exit_code) return *reply->exit_code;
  }
  return 0;
}
