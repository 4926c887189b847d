// ccts-adapter: the reference implementation's adapter (spec/ADAPTERS.md).
//
// One process per rank, started by the runner with torchrun's environment.
// stdin/stdout carry JSON Lines (hello, run, bye); stdout is reserved for the
// protocol, so everything else goes to stderr.
#include <cstdlib>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "case_interpreter.h"

namespace {

using json = nlohmann::ordered_json;

constexpr int kProtocolVersion = 2;

void send(const json& message) {
  std::cout << message.dump(-1, ' ', false, json::error_handler_t::replace) << '\n' << std::flush;
}

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoi(value) : fallback;
}

json protocol_error(const std::string& message) {
  return {{"type", "error"}, {"message", message}};
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  std::unique_ptr<ccts::adapter::Session> session;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json message;
    try {
      message = json::parse(line);
    } catch (const json::parse_error& e) {
      send(protocol_error(std::string("message is not JSON: ") + e.what()));
      return 2;
    }
    const std::string type = message.value("type", "");
    if (type == "hello") {
      const int protocol = message.value("protocol", -1);
      if (protocol != kProtocolVersion) {
        send(protocol_error("protocol version " + std::to_string(protocol) +
                            " is not supported; this adapter speaks version " +
                            std::to_string(kProtocolVersion)));
        return 2;
      }
      try {
        session = std::make_unique<ccts::adapter::Session>(
            env_int("RANK", 0), env_int("WORLD_SIZE", 1), message.value("backend", "gloo"),
            message.value("device", "cpu"));
      } catch (const std::exception& e) {
        send(protocol_error(std::string("cannot create the process group: ") + e.what()));
        return 3;
      }
      json hello = session->hello();
      hello["type"] = "hello";
      hello["protocol"] = kProtocolVersion;
      send(hello);
    } else if (type == "run") {
      if (!session) {
        send(protocol_error("'run' before 'hello'"));
        return 2;
      }
      send(session->run(message));
    } else if (type == "bye") {
      session.reset();
      send({{"type", "bye"}});
      return 0;
    } else {
      send(protocol_error("unknown message type '" + type + "'"));
      return 2;
    }
  }
  return 0;
}
