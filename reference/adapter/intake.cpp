#include "intake.h"

#include <exception>
#include <utility>

#include <ccts/mutants.h>

namespace ccts::adapter {

namespace {

Reply protocol_error(const std::string& message) {
  return {{{"type", "error"}, {"message", message}}, 2};
}

// The string field `key` of a message; nullopt when absent, `fallback` too.
std::optional<std::string> string_field(const json& message, const char* key,
                                        std::optional<std::string> fallback = std::nullopt) {
  const auto it = message.find(key);
  if (it == message.end()) return fallback;
  if (!it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

Intake::Intake(SessionFactory make_session) : make_session_(std::move(make_session)) {}

std::optional<Reply> Intake::handle(const std::string& line) {
  if (line.find_first_not_of(" \t\r") == std::string::npos) return std::nullopt;
  json message;
  try {
    message = json::parse(line);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large
    if (mutant("intake_number_overflow_uncaught") && e.id == 406) throw;
    return protocol_error(std::string("message is not JSON: ") + e.what());
  }
  if (!message.is_object()) return protocol_error("message is not a JSON object: " + message.dump().substr(0, 200));
  const auto type = string_field(message, "type");
  if (!type) return protocol_error("message has no string field 'type'");
  try {
    if (*type == "hello") return hello(message);
    if (*type == "run") return run(message);
    if (*type == "bye") {
      session_.reset();
      return Reply{{{"type", "bye"}}, 0};
    }
  } catch (const std::exception& e) {
    // Whatever escaped the session (it reports a case's own errors itself).
    return protocol_error("cannot take the '" + *type + "' message: " + e.what());
  }
  return protocol_error("unknown message type '" + *type + "'");
}

Reply Intake::hello(const json& message) {
  const auto protocol = message.find("protocol");
  if (protocol == message.end() || !protocol->is_number_integer() || *protocol != kProtocolVersion) {
    const std::string offered = protocol == message.end() ? "(none)" : protocol->dump();
    return protocol_error("protocol version " + offered + " is not supported; this adapter speaks version " +
                          std::to_string(kProtocolVersion));
  }
  const auto backend = string_field(message, "backend", "gloo");
  const auto device = string_field(message, "device", "cpu");
  if (!backend || !device) return protocol_error("hello: 'backend' and 'device' must be strings");
  try {
    session_.reset();  // one process group at a time
    session_ = make_session_(*backend, *device);
  } catch (const std::exception& e) {
    return {protocol_error(std::string("cannot create the process group: ") + e.what()).message, 3};
  }
  json reply = session_->hello();
  reply["type"] = "hello";
  reply["protocol"] = kProtocolVersion;
  return {reply, std::nullopt};
}

Reply Intake::run(const json& message) {
  if (!session_) return protocol_error("'run' before 'hello'");
  const auto case_it = message.find("case");
  if (case_it == message.end() || !case_it->is_object()) return protocol_error("run: 'case' is not an object");
  const auto id = case_it->find("id");
  if (id != case_it->end() && !id->is_string()) return protocol_error("run: the case's 'id' is not a string");
  return {session_->run(message), std::nullopt};
}

}  // namespace ccts::adapter
